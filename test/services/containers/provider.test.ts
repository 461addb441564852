import t from 'tap'
import { backoffMs, createSimulatedProvider, isTransient } from '../../../services/containers/provider.js'

const spec = (containerId: string) => ({
  containerId,
  region: 'us-east-1',
  cluster: 'fractal-us-east-1-1',
  capacityProvider: null,
  taskDefinition: 'fractal-chrome:1',
  environment: { FRACTAL_CONTAINER_SECRET: 'the-secret' }
})

t.test('simulated provider › pending until the start delay, then running with an address, pinging until stopped', async (t) => {
  const pings: string[] = []
  const provider = createSimulatedProvider({ startDelayMs: 30, pingEveryMs: 20, onRunning: async (id, secret) => { pings.push(`${id}:${secret}`) } })
  const { taskArn } = await provider.runTask(spec('c-1'))
  t.same(await provider.runTask(spec('c-1')), { taskArn }, 'a retried RunTask finds the same task')
  t.same(await provider.describeTask('us-east-1', 'fractal-us-east-1-1', taskArn), { state: 'pending' })
  await new Promise((resolve) => setTimeout(resolve, 110))
  t.match(await provider.describeTask('us-east-1', 'fractal-us-east-1-1', taskArn), { state: 'running', hostIp: /^203\.0\.113\./, ports: { tcp32262: Number } })
  t.ok(pings.length >= 3, `pings keep coming while it runs (${pings.length})`)
  t.equal(pings[0], 'c-1:the-secret', 'with the secret of its environment')
  t.same((await provider.listTasks('us-east-1', 'fractal-us-east-1-1')).map((x) => x.startedBy), ['c-1'])

  await provider.stopTask('us-east-1', 'fractal-us-east-1-1', taskArn, 'stopped by a test')
  const after = pings.length
  await new Promise((resolve) => setTimeout(resolve, 60))
  t.equal(pings.length, after, 'no ping after the stop')
  t.same(await provider.describeTask('us-east-1', 'fractal-us-east-1-1', taskArn), { state: 'stopped', reason: 'stopped by a test' })
  t.same(await provider.listTasks('us-east-1', 'fractal-us-east-1-1'), [])
})

t.test('provider errors › throttling, 5xx and network resets are transient; client errors are not', async (t) => {
  t.ok(isTransient(Object.assign(new Error('slow down'), { name: 'ThrottlingException', $fault: 'client' })))
  t.ok(isTransient(Object.assign(new Error('x'), { name: 'Whatever', $retryable: { throttling: true } })))
  t.ok(isTransient(Object.assign(new Error('x'), { name: 'ServerException', $metadata: { httpStatusCode: 500 } })))
  t.ok(isTransient(Object.assign(new Error('x'), { code: 'ECONNRESET' })))
  t.notOk(isTransient(Object.assign(new Error('x'), { name: 'ClusterNotFoundException', $fault: 'client', $metadata: { httpStatusCode: 400 } })))
  t.notOk(isTransient(new Error('plain')))
  t.notOk(isTransient(undefined))
})

t.test('provider errors › backoff grows exponentially with jitter, capped', async (t) => {
  for (let attempt = 0; attempt < 8; attempt++) {
    const ceiling = Math.min(30_000, 1000 * 2 ** attempt)
    const samples = Array.from({ length: 50 }, () => backoffMs(attempt))
    t.ok(samples.every((ms) => ms >= ceiling / 2 && ms <= ceiling), `attempt ${attempt}: within [${ceiling / 2}, ${ceiling}]`)
    if (attempt > 0) t.ok(new Set(samples).size > 1, 'jittered')
  }
})

t.test('simulated provider › describeTaskDefinition › knows its list: a pinned revision, or the family\'s latest', async (t) => {
  const provider = createSimulatedProvider({ startDelayMs: 0, taskDefinitions: ['fractal-chrome:1', 'fractal-chrome:3'] })
  t.same(await provider.describeTaskDefinition('us-east-1', 'fractal-chrome:3'), { family: 'fractal-chrome', revision: 3 })
  t.same(await provider.describeTaskDefinition('us-east-1', 'fractal-chrome'), { family: 'fractal-chrome', revision: 3 }, 'the latest')
  t.equal(await provider.describeTaskDefinition('us-east-1', 'fractal-chrome:2'), null, 'a revision it does not have')
  t.equal(await provider.describeTaskDefinition('us-east-1', 'fractal-figma'), null, 'a family it does not have')
  t.equal(await provider.describeTaskDefinition('us-east-1', 'not a name'), null)
  t.throws(() => createSimulatedProvider({ startDelayMs: 0, taskDefinitions: ['no-revision'] }), /family:revision/)
})
