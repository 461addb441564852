// Issue 19: a Redis connection error crashed the process. bee-queue's producer queues had no 'error'
// listener, so the first failed reconnection of a producer's client was an unhandled 'error' event. Here
// server.ts runs as an operator runs it (no worker: only the producers) against a Redis of its own, which
// goes away while the producers are idle and again while requests are enqueuing: the process stays up,
// requests that need Redis answer 503 with Retry-After, and enqueuing works again once Redis is back.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { Redis } from 'ioredis'
import { build, testConfig } from '../helpers/build.js'
import { entryEnv, runEntry } from '../helpers/processes.js'
import { freePort, hasRedisServer, startRedis } from '../helpers/redis-server.js'
import { until } from '../helpers/wait.js'
import type { ChildProcess } from 'node:child_process'
import { once } from 'node:events'

const skip = hasRedisServer ? false : 'redis-server is not installed (apt-get install redis-server)'

async function stop (redis: ChildProcess) {
  if (redis.exitCode !== null || redis.signalCode !== null) return
  redis.kill('SIGKILL')
  await once(redis, 'exit')
}

t.test('faults › Redis away under the queue producers › idle and enqueuing: the process stays up, enqueues answer 503 + Retry-After, and work again once Redis is back', { skip }, async (t) => {
  const redisPort = await freePort()
  let redis = await startRedis(redisPort)
  t.teardown(() => stop(redis))
  const config = await testConfig(t)
  const port = await freePort()
  const server = runEntry(t, 'server.ts', entryEnv(config, {
    HOST: '127.0.0.1',
    PORT: String(port),
    REDIS_URL: `redis://127.0.0.1:${redisPort}`,
    REDIS_PREFIX: `test:${randomBytes(6).toString('hex')}:`,
    // The newsletter subscription enqueues a mail and needs nothing else of Redis once the limiter is off.
    RATE_LIMIT_ENABLED: 'false',
    CLOUD_PROVIDER: 'simulated'
  }))
  t.ok(await server.waitFor(/Server listening/), 'the server listens')
  const subscribe = async (email: string) => {
    const res = await fetch(`http://127.0.0.1:${port}/v1/newsletter/subscriptions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ email }) })
    return { status: res.status, retryAfter: res.headers.get('retry-after'), body: await res.json() as { code?: string } }
  }
  const address = () => `fault-${randomBytes(5).toString('hex')}@example.test`
  t.equal((await subscribe(address())).status, 202, 'enqueues while Redis is there')

  // Idle producers: their clients find the connection gone and try to reconnect, in vain.
  await stop(redis)
  t.ok(await server.waitFor(/queue: Redis connection lost/, 30_000), 'the producers\' lost connection is logged')
  t.notOk(server.hasExited(), 'the process is still up')
  const during = await subscribe(address())
  t.equal(during.status, 503, 'an enqueue while Redis is away is 503')
  t.equal(during.body.code, 'unavailable')
  t.ok(Number(during.retryAfter) > 0, 'with Retry-After')

  // Back: the producers reconnect by themselves.
  redis = await startRedis(redisPort)
  t.ok(await until(async () => (await subscribe(address())).status === 202, 30_000), 'enqueues again once Redis is back')

  // Busy producers: requests wait on their enqueue (Redis holds write commands) when Redis goes away.
  const admin = new Redis(redisPort, '127.0.0.1', { maxRetriesPerRequest: 0, retryStrategy: () => null })
  admin.on('error', () => {})
  await admin.call('CLIENT', 'PAUSE', '60000', 'WRITE')
  const emails = Array.from({ length: 8 }, address)
  const answers = Promise.all(emails.map(subscribe))
  t.ok(await until(async () => {
    const rows = await fetchTokens(config.db.url!, emails)
    return rows === emails.length
  }, 30_000), 'every request has reached its enqueue')
  admin.disconnect()
  await stop(redis)
  const settled = await answers
  t.same(settled.map((a) => a.status), emails.map(() => 503), 'each enqueue in flight answers 503')
  t.ok(settled.every((a) => a.body.code === 'unavailable' && Number(a.retryAfter) > 0), 'unavailable, with Retry-After')
  t.notOk(server.hasExited(), 'the process is still up')

  redis = await startRedis(redisPort)
  t.ok(await until(async () => (await subscribe(address())).status === 202, 30_000), 'and recovers again')
  t.notOk(server.hasExited(), 'up throughout')
  t.notMatch(server.output(), /Unhandled error event|ERR_UNHANDLED_ERROR|uncaught/i, 'no unhandled error was reported')
})

t.test('faults › Redis restarted under a worker › a delayed job queued afterwards still runs (bee-queue\'s scripts are loaded again)', { skip }, async (t) => {
  const redisPort = await freePort()
  let redis = await startRedis(redisPort)
  t.teardown(() => stop(redis))
  const app = await build(t, { REDIS_URL: `redis://127.0.0.1:${redisPort}` })
  const ran: string[] = []
  app.queue.define({ family: 'mail', name: 'probe', handle: async (data: { n: string }) => { ran.push(data.n) } })
  app.queue.startWorker(1)
  await app.queue.enqueue({ family: 'mail', name: 'probe' }, { n: 'before' }, { delayMs: 10 })
  t.ok(await until(() => ran.includes('before'), 20_000), 'runs before the restart')

  // A restarted Redis has an empty script cache: bee-queue calls its scripts by hash (NOSCRIPT).
  await stop(redis)
  redis = await startRedis(redisPort)
  t.ok(await until(async () => {
    try {
      await app.queue.enqueue({ family: 'mail', name: 'probe' }, { n: 'after' }, { jobId: 'after', delayMs: 10 })
      return true
    } catch { return false }
  }, 30_000), 'enqueued once Redis is back')
  t.ok(await until(() => ran.includes('after'), 30_000), 'the worker raised the delayed job and ran it')
})

/** How many of these addresses have their confirmation token stored (the step before the mail is queued). */
async function fetchTokens (databaseUrl: string, emails: string[]): Promise<number> {
  const { default: pg } = await import('pg')
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    const { rows } = await client.query<{ n: string }>("select count(*) as n from email_token where purpose = 'newsletter' and email = any($1)", [emails])
    return Number(rows[0]!.n)
  } finally {
    await client.end()
  }
}
