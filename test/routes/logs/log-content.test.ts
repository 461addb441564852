import { randomUUID } from 'node:crypto'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync } from 'node:zlib'
import t from 'tap'
import { build, type Overrides } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { s3rverCredentials, startS3 } from '../../helpers/s3.js'
import { until } from '../../helpers/wait.js'

// The SDK reads its credentials from the environment; s3rver accepts (and checks signatures made with) these.
process.env.AWS_ACCESS_KEY_ID = s3rverCredentials.accessKeyId
process.env.AWS_SECRET_ACCESS_KEY = s3rverCredentials.secretAccessKey

type App = Awaited<ReturnType<typeof build>>
type Test = { teardown (fn: () => unknown): void }

/** An app with the local store (no LOG_BUCKET): logs go to DATA_DIR/logs, a temp folder of its own. */
async function localApp (t: Test, overrides: Overrides = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'fractal-logs-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  return { app: await build(t, { DATA_DIR: dataDir, ...overrides }), dataDir }
}

async function uploadLog (app: App, headers: Record<string, string>, text: string) {
  const res = await app.inject({ method: 'POST', url: '/v1/logs', query: { sender: 'client' }, payload: text, headers: { ...headers, 'content-type': 'text/plain' } })
  if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body}`)
  return res.json() as { id: string }
}
const stored = (app: App, id: string) =>
  until(async () => (await app.db.selectFrom('log_upload').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status === 'stored')
const content = (app: App, id: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url: `/v1/logs/${id}/content`, headers })

t.test('getLogContent › valid › the owner and an admin download the stored gzip from the local store', async (t) => {
  const { app, dataDir } = await localApp(t, { PUBLIC_URL: 'https://api.example.test' })
  app.queue.startWorker(1)
  const owner = await given(app).signedIn()
  const admin = await given(app).signedIn({ role: 'admin' })
  const text = 'local store log line\n'.repeat(30)
  const log = await uploadLog(app, owner.headers, text)
  t.ok(await stored(app, log.id))

  const row = await app.db.selectFrom('log_upload').selectAll().where('id', '=', log.id).executeTakeFirstOrThrow()
  const onDisk = await readFile(join(dataDir, 'logs', row.object_key))
  t.equal(gunzipSync(onDisk).toString('utf8'), text, 'the file is in DATA_DIR/logs')
  t.equal(row.body, null, 'the spool is emptied')

  // Without presigned URLs, the list points at this API.
  const listed = await app.inject({ method: 'GET', url: '/v1/logs', headers: owner.headers })
  t.equal(listed.json().items[0].downloadUrl, `https://api.example.test/v1/logs/${log.id}/content`)

  for (const [who, headers] of [['owner', owner.headers], ['admin', admin.headers]] as const) {
    const res = await content(app, log.id, headers)
    t.equal(res.statusCode, 200, who)
    t.match(res.headers['content-type'], /^application\/gzip/, who)
    t.equal(res.headers['content-disposition'], `attachment; filename="${log.id}.txt.gz"`, who)
    t.equal(gunzipSync(res.rawPayload).toString('utf8'), text, who)
  }
})

t.test('getLogContent › valid › with S3, the content streams from the bucket', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  app.queue.startWorker(1)
  const owner = await given(app).signedIn()
  const log = await uploadLog(app, owner.headers, 'in the bucket\n')
  t.ok(await stored(app, log.id))

  const res = await content(app, log.id, owner.headers)

  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/gzip/)
  t.equal(gunzipSync(res.rawPayload).toString('utf8'), 'in the bucket\n')
})

t.test('getLogContent › valid › a log not stored yet is 409 conflict', async (t) => {
  const { app } = await localApp(t)
  const owner = await given(app).signedIn()
  const log = await uploadLog(app, owner.headers, 'still in the spool\n') // no worker: it stays pending

  const res = await content(app, log.id, owner.headers)

  t.equal(res.statusCode, 409)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal(res.json().code, 'conflict')
})

t.test('getLogContent › insufficient permissions › another user gets 404 (existence not revealed), no token 401', async (t) => {
  const { app } = await localApp(t)
  app.queue.startWorker(1)
  const owner = await given(app).signedIn()
  const other = await given(app).signedIn()
  const developer = await given(app).signedIn({ role: 'developer' })
  const log = await uploadLog(app, owner.headers, 'private\n')
  t.ok(await stored(app, log.id))

  for (const [who, headers] of [['another user', other.headers], ['a developer', developer.headers]] as const) {
    const res = await content(app, log.id, headers)
    t.equal(res.statusCode, 404, who)
    t.match(res.headers['content-type'], /application\/problem\+json/, who)
    t.equal(res.json().code, 'not_found', who)
    t.notMatch(res.body, 'private', who)
  }
  const none = await content(app, log.id)
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'unauthorized')
  const narrow = await content(app, log.id, bearer(await given(app).token({ sub: owner.account.id, scopes: ['account'] })))
  t.equal(narrow.statusCode, 403, 'a token without the containers scope')
  t.equal(narrow.json().code, 'forbidden')
})

t.test('getLogContent › non-existing › an unknown log id is 404 not_found', async (t) => {
  const { app } = await localApp(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await content(app, randomUUID(), admin.headers)
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal(res.json().code, 'not_found')
})

t.test('getLogContent › non-existing › a stored log whose file is gone from the store is 404, not a 500', async (t) => {
  const { app, dataDir } = await localApp(t)
  app.queue.startWorker(1)
  const owner = await given(app).signedIn()
  const log = await uploadLog(app, owner.headers, 'soon gone\n')
  t.ok(await stored(app, log.id))
  await rm(join(dataDir, 'logs'), { recursive: true, force: true })

  const res = await content(app, log.id, owner.headers)

  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('getLogContent › invalid input › a log id that is not a uuid is 400 naming it', async (t) => {
  const { app } = await localApp(t)
  const owner = await given(app).signedIn()
  for (const id of ['42', 'not-a-uuid', '..%2F..%2Fjwt%2Fprivate.pem']) {
    const res = await content(app, id, owner.headers)
    t.equal(res.statusCode, 400, id)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field: '/params/logId' }] }, id)
  }
})
