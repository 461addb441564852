import t from 'tap'
import { Batcher } from '../../services/batcher.js'

/** A run whose batches the test ends by hand: each batch waits until released. */
function heldRun () {
  const batches: Array<{ inputs: number[], release: () => void, fail: (err: Error) => void }> = []
  const run = (inputs: number[]) => new Promise<string[]>((resolve, reject) => {
    batches.push({ inputs, release: () => { resolve(inputs.map((n) => `answer ${n}`)) }, fail: reject })
  })
  return { batches, run }
}
const settle = () => new Promise((resolve) => setImmediate(resolve))

t.test('batcher › valid › a call alone leaves at once, in a batch of its own', async (t) => {
  const { batches, run } = heldRun()
  const batcher = new Batcher(run, { maxSize: 32, maxInFlight: 1 })
  const answer = batcher.submit(7)
  await settle()
  t.same(batches.map((b) => b.inputs), [[7]])
  batches[0]!.release()
  t.equal(await answer, 'answer 7')
})

t.test('batcher › valid › calls made while batches run leave together: at most maxSize a batch, maxInFlight at once, each answer to its caller', async (t) => {
  const { batches, run } = heldRun()
  const sizes: number[] = []
  const batcher = new Batcher(run, { maxSize: 3, maxInFlight: 2, onBatch: (size) => sizes.push(size) })
  const answers = Array.from({ length: 9 }, (_, n) => batcher.submit(n))
  await settle()
  t.same(batches.map((b) => b.inputs), [[0], [1]], 'the first two leave at once; the rest wait for a free slot')
  batches[0]!.release()
  await settle()
  t.same(batches.map((b) => b.inputs).slice(2), [[2, 3, 4]], 'one slot freed: the next three leave together')
  batches[1]!.release()
  await settle()
  batches[2]!.release()
  await settle()
  t.same(batches.map((b) => b.inputs).slice(3), [[5, 6, 7], [8]])
  for (const batch of batches.slice(3)) batch.release()
  t.same(await Promise.all(answers), Array.from({ length: 9 }, (_, n) => `answer ${n}`))
  t.same(sizes, [1, 1, 3, 3, 1])
})

t.test('batcher › faults › a batch that fails rejects each of its calls; the next batch still runs', async (t) => {
  const { batches, run } = heldRun()
  const batcher = new Batcher(run, { maxSize: 10, maxInFlight: 1 })
  const first = batcher.submit(1)
  const second = batcher.submit(2)
  const third = batcher.submit(3)
  await settle()
  batches[0]!.fail(new Error('connection lost'))
  await t.rejects(first, /connection lost/)
  await settle()
  t.same(batches[1]!.inputs, [2, 3])
  batches[1]!.fail(new Error('still down'))
  await t.rejects(second, /still down/)
  await t.rejects(third, /still down/)
  const fourth = batcher.submit(4)
  await settle()
  batches[2]!.release()
  t.equal(await fourth, 'answer 4')
})

t.test('batcher › faults › a run that throws at once rejects its batch, not the caller of submit', async (t) => {
  const batcher = new Batcher<number, string>(() => { throw new Error('bad batch') }, { maxSize: 4, maxInFlight: 1 })
  await t.rejects(batcher.submit(1), /bad batch/)
})
