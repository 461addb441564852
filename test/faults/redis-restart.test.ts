// Redis restarting under the containers feature: assignments keep working (the start job is committed
// and the reaper queues it once Redis is back), /readyz says 503 meanwhile, and no start job is lost,
// not even those the restarted Redis forgot (no persistence here).
import { once } from 'node:events'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../helpers/build.js'
import { freePort, hasRedisServer, startRedis } from '../helpers/redis-server.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

t.test('faults › Redis restarting › assignments answer 202 meanwhile, /readyz is 503, and every start job runs once Redis is back', { skip: hasRedisServer ? false : 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  const port = await freePort()
  let redis = await startRedis(port)
  t.teardown(() => { redis.kill('SIGKILL') })
  const app = await build(t, { REDIS_URL: `redis://127.0.0.1:${port}`, SIMULATED_START_MS: '20', CONTAINER_STALLED_MS: '300' })
  const offer = await given(app).offer()
  const before = await given(app).signedIn()
  const during = await given(app).signedIn()
  const assign = (headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...headers, 'idempotency-key': randomUUID() } })

  const first = await assign(before.headers)
  t.equal(first.statusCode, 202, 'queued in Redis (the worker is not running yet)')

  redis.kill('SIGKILL')
  await once(redis, 'exit')
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 503, 5000), '/readyz is 503 while Redis is away')
  const startedAt = Date.now()
  const second = await assign(during.headers)
  t.equal(second.statusCode, 202, 'the assignment still answers: its job is committed')
  t.ok(Date.now() - startedAt < 3000, 'without waiting for Redis')
  const secondJob = await app.db.selectFrom('job').selectAll().where('id', '=', second.json().job.id).executeTakeFirstOrThrow()
  t.equal(secondJob.needs_enqueue, true, 'marked for the reaper')

  redis = await startRedis(port)
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: '/readyz' })).statusCode === 200, 10_000), 'ready again')
  app.queue.startWorker(2)
  // The first job vanished with the old Redis (no persistence); the second never reached it.
  await new Promise((resolve) => setTimeout(resolve, 400))
  t.match(await app.schedules.runOnce('reap-containers'), { resumed: 2 })
  for (const res of [first, second]) {
    const jobId = res.json().job.id
    t.ok(await until(async () => (await app.db.selectFrom('job').select('state').where('id', '=', jobId).executeTakeFirstOrThrow()).state === 'succeeded', 10_000), `job ${jobId} succeeded`)
  }
  const tasks = await app.db.selectFrom('container').select(['state', 'task_arn']).where('app_id', '=', offer.app).execute()
  t.same(tasks.map((c) => c.state).sort(), ['in_use', 'in_use'])
  t.equal(new Set(tasks.map((c) => c.task_arn)).size, 2, 'one task each')
})
