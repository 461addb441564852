import { once } from 'node:events'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { freePort, hasRedisServer, startRedis } from '../../helpers/redis-server.js'
import { given } from '../../helpers/given.js'
import { s3rverCredentials, startS3 } from '../../helpers/s3.js'
import { until } from '../../helpers/wait.js'

// The SDK reads its credentials from the environment; s3rver accepts (and checks signatures made with) these.
process.env.AWS_ACCESS_KEY_ID = s3rverCredentials.accessKeyId
process.env.AWS_SECRET_ACCESS_KEY = s3rverCredentials.secretAccessKey

type App = Awaited<ReturnType<typeof build>>

async function uploadLog (app: App, headers: Record<string, string>, text: string) {
  const res = await app.inject({ method: 'POST', url: '/v1/logs', query: { sender: 'client' }, payload: text, headers: { ...headers, 'content-type': 'text/plain' } })
  if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body}`)
  return res.json() as { id: string }
}
const logRow = (app: App, id: string) => app.db.selectFrom('log_upload').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const jobOf = (app: App, id: string) => app.db.selectFrom('job').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const daysAgo = (days: number) => new Date(Date.now() - days * 86_400_000)

t.test('uploadLog › faults › S3 away: the upload is still accepted, the job fails and retries, the log waits in the spool and is stored once S3 is back', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, { ...s3.env, LOG_SPOOL_INTERVAL_MS: '200' })
  const user = await given(app).signedIn()
  const text = 'written while the bucket was away\n'.repeat(20)

  await s3.stop()
  const log = await uploadLog(app, user.headers, text)
  const { job_id: jobId } = await logRow(app, log.id)
  app.queue.startWorker(1)

  // The attempt fails on the store; bee-queue keeps the job for a retry (with backoff).
  t.ok(await until(async () => /store is unavailable/.test((await jobOf(app, jobId!)).message ?? '')), 'the job reports the store unavailable')
  t.ok(await until(async () => (await app.queue.counts('logs')).delayed === 1), 'the job waits for its retry')
  const failedOnce = await jobOf(app, jobId!)
  t.not(failedOnce.state, 'succeeded')
  t.not(failedOnce.state, 'failed', 'retries are left: not failed for good')
  t.ok(await until(async () => (await jobOf(app, jobId!)).updated_at > failedOnce.updated_at, 5000), 'the retry runs (and fails again)')
  const waiting = await logRow(app, log.id)
  t.equal(waiting.status, 'pending')
  t.equal(gunzipSync(waiting.body!).toString('utf8'), text, 'the body is kept in the spool')
  t.same(await app.inject({ method: 'GET', url: '/v1/logs', headers: user.headers }).then((r) => r.json().items.map((l: { status: string }) => l.status)), ['pending'])

  // S3 is back (same port, same folder): the spool schedule queues the log again and it is stored.
  await s3.start()
  t.ok(await until(async () => {
    const pass = await app.schedules.runOnce('log-spool')
    return (pass !== false && pass.requeued! > 0) || (await logRow(app, log.id)).status === 'stored'
  }), 'the spool schedule queues the waiting log again')
  t.ok(await until(async () => (await logRow(app, log.id)).status === 'stored'), 'the log is stored: not lost')

  const row = await logRow(app, log.id)
  t.equal(row.body, null, 'the spool is emptied')
  const keys = await s3.keys('logs/')
  t.same(keys, [row.object_key], 'one object: stored once, under its key')
  t.equal(gunzipSync((await s3.get(row.object_key))!).toString('utf8'), text)
  t.match(await jobOf(app, jobId!), { state: 'succeeded', progress: 100, error_code: null })
})

t.test('uploadLog › faults › a log whose job failed for good (every attempt) is queued again by the spool and stored', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, { ...s3.env, LOG_SPOOL_INTERVAL_MS: '60000' })
  const user = await given(app).signedIn()
  const log = await uploadLog(app, user.headers, 'given up on\n')
  const row = await logRow(app, log.id)
  // As the last attempt leaves it: the job failed, the body still spooled.
  await app.db.updateTable('job').set({ state: 'failed', error_code: 'store_unavailable', progress: 100 }).where('id', '=', row.job_id!).execute()

  t.match(await app.schedules.runOnce('log-spool'), { requeued: 1 }, 'a failed job is picked up at once, whatever its age')
  app.queue.startWorker(1)

  t.ok(await until(async () => (await logRow(app, log.id)).status === 'stored'))
  t.equal(gunzipSync((await s3.get(row.object_key))!).toString('utf8'), 'given up on\n')
  t.match(await jobOf(app, row.job_id!), { state: 'succeeded', error_code: null })
})

t.test('uploadLog › faults › log-retention deletes the objects and rows older than LOG_RETENTION_DAYS; newer ones stay', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, { ...s3.env, LOG_RETENTION_DAYS: '30' })
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const logs: Record<string, { id: string }> = {}
  for (const name of ['ancient', 'expired', 'recent', 'today']) {
    logs[name] = await uploadLog(app, user.headers, `${name}\n`)
  }
  t.ok(await until(async () => (await app.db.selectFrom('log_upload').select('id').where('status', '=', 'stored').execute()).length === 4))
  const keyOf = async (name: string) => (await logRow(app, logs[name]!.id)).object_key
  const keys = { ancient: await keyOf('ancient'), expired: await keyOf('expired'), recent: await keyOf('recent'), today: await keyOf('today') }
  t.equal((await s3.keys('logs/')).length, 4)
  for (const [name, days] of [['ancient', 100], ['expired', 31], ['recent', 29]] as const) {
    await app.db.updateTable('log_upload').set({ created_at: daysAgo(days) }).where('id', '=', logs[name]!.id).execute()
  }
  // An old log that never reached the store: its row goes too (there is no object to delete).
  const stuck = await app.db.insertInto('log_upload').values({
    user_id: user.account.id, sender: 'client', object_key: `logs/${user.account.id}/none/client-stuck.txt.gz`, bytes: 3, body: Buffer.from([1, 2, 3]), created_at: daysAgo(100)
  }).returning('id').executeTakeFirstOrThrow()

  const pass = await app.schedules.runOnce('log-retention')

  t.match(pass, { deleted: 3 })
  t.same(await s3.keys('logs/'), [keys.recent, keys.today].sort(), 'the objects of expired logs are deleted, the others stay')
  const left = await app.db.selectFrom('log_upload').select('id').execute()
  t.same(left.map((r) => r.id).sort(), [logs.recent!.id, logs.today!.id].sort())
  t.notOk(left.some((r) => r.id === stuck.id))
  const listed = await app.inject({ method: 'GET', url: '/v1/logs', headers: user.headers })
  t.same(listed.json().items.map((l: { id: string }) => l.id), [logs.today!.id, logs.recent!.id])
})

t.test('uploadLog › faults › S3 away during retention: nothing is deleted, the next pass does it', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  app.queue.startWorker(1)
  const user = await given(app).signedIn()
  const log = await uploadLog(app, user.headers, 'old\n')
  t.ok(await until(async () => (await logRow(app, log.id)).status === 'stored'))
  await app.db.updateTable('log_upload').set({ created_at: daysAgo(120) }).where('id', '=', log.id).execute()
  const key = (await logRow(app, log.id)).object_key

  await s3.stop()
  await t.rejects(app.schedules.runOnce('log-retention'), 'the pass fails while the bucket is away')
  t.ok(await logRow(app, log.id), 'the row stays: its object could not be deleted')

  await s3.start()
  t.same(await s3.keys('logs/'), [key])
  t.match(await app.schedules.runOnce('log-retention'), { deleted: 1 })
  t.same(await s3.keys('logs/'), [])
  t.same(await app.db.selectFrom('log_upload').select('id').execute(), [])
})

t.test('uploadLog › faults › Redis away: the upload is still accepted into the spool, and stored once Redis is back', { skip: hasRedisServer ? false : 'redis-server is not installed' }, async (t) => {
  const s3 = await startS3(t)
  const port = await freePort()
  let redis = await startRedis(port)
  t.teardown(() => { redis.kill('SIGKILL') })
  const app = await build(t, { ...s3.env, REDIS_URL: `redis://127.0.0.1:${port}`, LOG_SPOOL_INTERVAL_MS: '200' })
  const user = await given(app).signedIn()

  redis.kill('SIGKILL')
  await once(redis, 'exit')
  const res = await app.inject({ method: 'POST', url: '/v1/logs', query: { sender: 'client' }, payload: 'queue away\n', headers: { ...user.headers, 'content-type': 'text/plain' } })
  t.equal(res.statusCode, 202, 'the log is committed to the spool; queueing it waits')
  const row = await logRow(app, res.json().id)
  t.equal(row.status, 'pending')
  t.ok(row.body)

  redis = await startRedis(port)
  app.queue.startWorker(1)
  t.ok(await until(async () => {
    const pass = await app.schedules.runOnce('log-spool').catch(() => false as const)
    return (pass !== false && pass.requeued! > 0) || (await logRow(app, row.id)).status === 'stored'
  }), 'the spool schedule queues it once Redis answers')
  t.ok(await until(async () => (await logRow(app, row.id)).status === 'stored'), 'stored: not lost')
  t.equal(gunzipSync((await s3.get(row.object_key))!).toString('utf8'), 'queue away\n')
})
