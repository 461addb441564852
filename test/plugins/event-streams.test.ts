// The stream slots behind EVENT_STREAMS_PER_USER: one sorted set per user in Redis, each slot with an expiry its
// process keeps pushing back, so that the slots of a process that died free themselves.
import { randomBytes, randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import t from 'tap'
import { memorySlots, redisSlots } from '../../plugins/event-streams.js'
import { deleteRedisPrefix } from '../helpers/build.js'
import { redisUrl } from '../helpers/env.js'

const ttlMs = 60_000

/** A Redis client of its own per process under test, on this test's prefix. */
function redisFor (t: { teardown (fn: () => unknown): void }, prefix: string) {
  const redis = new Redis(redisUrl, { keyPrefix: prefix })
  t.teardown(() => redis.quit())
  return redis
}

t.test('event streams › slots › a process that dies without giving its slots back frees them once their lifetime has passed, not before', async (t) => {
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  t.teardown(() => deleteRedisPrefix(prefix))
  let now = Date.parse('2030-01-01T00:00:00Z')
  const clock = () => now
  const crashed = redisSlots(redisFor(t, prefix), { max: 2, ttlMs, now: clock })
  const alive = redisSlots(redisFor(t, prefix), { max: 2, ttlMs, now: clock })
  t.equal(await crashed.take('user:a', 's1'), 'taken')
  t.equal(await crashed.take('user:a', 's2'), 'taken')
  // The process dies here: no give, no keep.
  now += ttlMs - 1
  t.equal(await alive.take('user:a', 's3'), 'full', 'within their lifetime the dead slots still count')
  now += 2
  t.equal(await alive.take('user:a', 's3'), 'taken', 'past it they are dropped')
  t.equal(await alive.take('user:a', 's4'), 'taken')
  t.equal(await alive.take('user:a', 's5'), 'full')
})

t.test('event streams › slots › kept slots outlive the lifetime; a slot lost meanwhile is reported and not taken back', async (t) => {
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  t.teardown(() => deleteRedisPrefix(prefix))
  let now = Date.parse('2030-01-01T00:00:00Z')
  const clock = () => now
  const a = redisSlots(redisFor(t, prefix), { max: 2, ttlMs, now: clock })
  const b = redisSlots(redisFor(t, prefix), { max: 2, ttlMs, now: clock })
  await a.take('user:a', 'kept')
  await a.take('user:a', 'stalled')
  // Every third of the lifetime the live process keeps its open streams; `stalled` is one it failed to keep.
  for (let i = 0; i < 6; i++) {
    now += ttlMs / 3
    t.same(await a.keep([{ owner: 'user:a', id: 'kept' }]), [])
  }
  t.equal(await b.take('user:a', 'new'), 'taken', 'the slot that was not kept expired and was dropped')
  t.equal(await b.take('user:a', 'newer'), 'full', 'the kept one still counts, two lifetimes later')
  t.same(await a.keep([{ owner: 'user:a', id: 'kept' }, { owner: 'user:a', id: 'stalled' }]), ['stalled'], 'the lost slot is reported (its stream is ended)')
  t.equal(await b.take('user:a', 'newer'), 'full', 'and keeping did not put it back over the limit')
})

t.test('event streams › slots › thirty concurrent takes from three processes: exactly the limit', async (t) => {
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  t.teardown(() => deleteRedisPrefix(prefix))
  const stores = [1, 2, 3].map(() => redisSlots(redisFor(t, prefix), { max: 5, ttlMs }))
  const results = await Promise.all(Array.from({ length: 30 }, (_, i) => stores[i % 3]!.take('user:a', randomUUID())))
  t.equal(results.filter((r) => r === 'taken').length, 5)
  t.equal(results.filter((r) => r === 'full').length, 25)
  t.equal(await stores[0]!.take('user:b', randomUUID()), 'taken', 'another owner has its own slots')
})

t.test('event streams › slots › in process (no Redis): the same limit, given back on close', async (t) => {
  const slots = memorySlots({ max: 2 })
  const results = await Promise.all(['a', 'b', 'c'].map((id) => slots.take('user:a', id)))
  t.same(results.filter((r) => r === 'taken').length, 2)
  await slots.give('user:a', 'a')
  t.equal(await slots.take('user:a', 'd'), 'taken')
})
