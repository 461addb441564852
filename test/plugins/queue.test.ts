import t from 'tap'
import type { FastifyBaseLogger, FastifyInstance } from 'fastify'
import { beeRedisOptions } from '../../plugins/queue.js'
import { build } from '../helpers/build.js'
import { until } from '../helpers/wait.js'

for (const mode of ['bee-queue', 'in-process'] as const) {
  const overrides = mode === 'in-process' ? { REDIS_URL: '' } : {}

  t.test(`queue (${mode}) › a job runs once in the worker, and an id enqueued twice is one job`, async (t) => {
    const app: FastifyInstance = await build(t, overrides)
    t.equal(app.queue.kind, mode)
    const seen: unknown[] = []
    app.queue.define({ family: 'mail', name: 'record', handle: async (data) => { seen.push(data) } })

    const first = await app.queue.enqueue({ family: 'mail', name: 'record' }, { n: 1 }, { jobId: 'job-same' })
    const second = await app.queue.enqueue({ family: 'mail', name: 'record' }, { n: 2 }, { jobId: 'job-same' })
    t.equal(first, 'job-same')
    t.equal(second, 'job-same')
    t.equal((await app.queue.counts('mail')).waiting, 1)

    app.queue.startWorker(2)
    t.ok(await until(async () => (await app.queue.counts('mail')).succeeded === 1 || seen.length === 1))
    await new Promise((resolve) => setTimeout(resolve, 100))
    t.same(seen, [{ n: 1 }])
  })

  t.test(`queue (${mode}) › a failing job is retried with backoff until it succeeds`, async (t) => {
    const app = await build(t, overrides)
    let attempts = 0
    app.queue.define({
      family: 'logs',
      name: 'flaky',
      handle: async () => {
        attempts++
        if (attempts < 2) throw new Error('S3 is away')
        return 'uploaded'
      }
    })
    await app.queue.enqueue({ family: 'logs', name: 'flaky' }, {}, { retries: 2 })
    app.queue.startWorker(1)
    t.ok(await until(async () => attempts === 2, 15000), 'second attempt ran')
  })
}

t.test('queue › start-up refuses a REDIS_URL that is not redis://', async (t) => {
  await t.rejects(build(t, { REDIS_URL: 'http://127.0.0.1:6379' }), /REDIS_URL must match pattern/)
})

t.test('queue › bee-queue\'s Redis clients reconnect for as long as Redis is away, at most every 2 s (issue 19)', async (t) => {
  const warnings: unknown[] = []
  const log = { warn: (obj: unknown) => { warnings.push(obj) } } as unknown as FastifyBaseLogger
  const options = beeRedisOptions('redis://127.0.0.1:6379', log, { family: 'mail', role: 'producer' }, false)
  // node_redis gives up once a single outage's retries add up to connect_timeout (an hour by default).
  t.ok(options.connect_timeout >= 24 * 3600_000, 'not after an hour')
  t.equal(options.retry_strategy({ attempt: 1 }), 100)
  t.equal(options.retry_strategy({ attempt: 100_000 }), 2000, 'a number (go on), never an error (give up)')
  t.equal(warnings.length, 1, 'the outage is logged when it begins, not at every attempt')
})
