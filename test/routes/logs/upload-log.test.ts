import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { gunzipSync, gzipSync } from 'node:zlib'
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

const upload = (app: App, headers: Record<string, string>, query: Record<string, string>, payload: string | Buffer, type = 'text/plain') =>
  app.inject({ method: 'POST', url: '/v1/logs', query, payload, headers: { ...headers, 'content-type': type } })

const containerHeaders = (id: string, secret: string) => ({ 'x-container-id': id, 'x-container-secret': secret })

/** An app storing its logs in a folder of its own (no bucket): for tests that never reach the store. */
async function localApp (t: Test, overrides: Overrides = {}) {
  const dataDir = await mkdtemp(join(tmpdir(), 'fractal-logs-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  return build(t, { DATA_DIR: dataDir, ...overrides })
}

/** Every file under the app's local log store (DATA_DIR/logs), none when it was never written. */
const storedFiles = async (app: App) =>
  (await readdir(app.config.logs.folder, { recursive: true, withFileTypes: true }).catch(() => [])).filter((e) => e.isFile()).map((e) => e.name)

const logRows = (app: App) => app.db.selectFrom('log_upload').selectAll().execute()
const logRow = (app: App, id: string) => app.db.selectFrom('log_upload').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const jobOf = (app: App, id: string) => app.db.selectFrom('job').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const stored = (app: App, id: string) => until(async () => (await logRow(app, id)).status === 'stored')

t.test('uploadLog › valid › a client app text log is gzipped into the bucket under its user and container; the spool is emptied', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  const { user, container } = await given(app).assignedContainer()
  const text = `[client] session started\n${'frame dropped\n'.repeat(200)}[client] bye ünïcödé\n`

  const res = await upload(app, user.headers, { sender: 'client', containerId: container.id }, text, 'text/plain; charset=utf-8')

  t.equal(res.statusCode, 202)
  const log = res.json()
  t.match(log, { sender: 'client', userId: user.account.id, containerId: container.id, status: 'pending', storedAt: null, downloadUrl: null })
  t.equal(res.headers.location, `/v1/logs/${log.id}/content`)
  const spooled = await logRow(app, log.id)
  t.equal(gunzipSync(spooled.body!).toString('utf8'), text, 'the spool holds the gzipped log until the job stores it')
  t.equal(log.bytes, spooled.body!.length, 'bytes is the gzipped size')
  t.match(await jobOf(app, spooled.job_id!), { kind: 'upload_log', owner_id: user.account.id })

  app.queue.startWorker(1)
  t.ok(await stored(app, log.id), 'the job stores the log')

  const keys = await s3.keys(`logs/${user.account.id}/${container.id}/`)
  t.equal(keys.length, 1)
  t.match(keys[0], /^logs\/[0-9a-f-]{36}\/[0-9a-f-]{36}\/client-[^/]+\.txt\.gz$/)
  const row = await logRow(app, log.id)
  t.equal(row.object_key, keys[0])
  const object = (await s3.get(keys[0]!))!
  t.equal(gunzipSync(object).toString('utf8'), text, 'the object gunzips to the text sent')
  t.equal(row.bytes, object.length)
  t.equal(row.body, null, 'the spool is emptied')
  t.ok(row.stored_at)
  t.match(await jobOf(app, row.job_id!), { state: 'succeeded', progress: 100, message: 'stored' })

  // Without containerId, the log is filed under "none".
  const loose = await upload(app, user.headers, { sender: 'client' }, 'no container yet')
  t.equal(loose.statusCode, 202)
  t.equal(loose.json().containerId, null)
  t.ok(await stored(app, loose.json().id))
  const looseKeys = await s3.keys(`logs/${user.account.id}/none/`)
  t.equal(looseKeys.length, 1)
  t.match(looseKeys[0], /\/none\/client-[^/]+\.txt\.gz$/)
  t.equal(gunzipSync((await s3.get(looseKeys[0]!))!).toString('utf8'), 'no container yet')
})

t.test('uploadLog › valid › an application/gzip body is stored exactly as sent', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  const user = await given(app).signedIn()
  const gz = gzipSync(Buffer.from('already gzipped by the client\n'.repeat(50)), { level: 9 })

  const res = await upload(app, user.headers, { sender: 'client' }, gz, 'application/gzip')

  t.equal(res.statusCode, 202)
  t.equal(res.json().bytes, gz.length)
  app.queue.startWorker(1)
  t.ok(await stored(app, res.json().id))
  const [key] = await s3.keys(`logs/${user.account.id}/none/`)
  t.ok(key)
  t.same(await s3.get(key!), gz, 'byte for byte: not gzipped a second time')
})

t.test('uploadLog › valid › a container sends its server log with its secret: stored under its user and its own id', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  const { user, warm, container } = await given(app).assignedContainer()
  const other = await given(app).assignedContainer()
  t.equal(warm.id, container.id, 'the assigned container is the warm one (its secret is known)')

  // A containerId in the query does not let a container file its log under another container.
  const res = await upload(app, containerHeaders(warm.id, warm.secret), { sender: 'server', containerId: other.container.id }, 'protocol server: stream started\n')

  t.equal(res.statusCode, 202)
  t.match(res.json(), { sender: 'server', userId: user.account.id, containerId: container.id, status: 'pending' })
  app.queue.startWorker(1)
  t.ok(await stored(app, res.json().id))
  const keys = await s3.keys('logs/')
  t.equal(keys.length, 1)
  t.match(keys[0], new RegExp(`^logs/${user.account.id}/${container.id}/server-[^/]+\\.txt\\.gz$`))
  t.equal(gunzipSync((await s3.get(keys[0]!))!).toString('utf8'), 'protocol server: stream started\n')
})

t.test('uploadLog › valid › a warm container nobody holds yet sends a log: no user, its container id', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  const warm = await given(app).warmContainer(await given(app).offer())

  const res = await upload(app, containerHeaders(warm.id, warm.secret), { sender: 'server' }, 'booted\n')

  t.equal(res.statusCode, 202)
  t.match(res.json(), { userId: null, containerId: warm.id })
  app.queue.startWorker(1)
  t.ok(await stored(app, res.json().id))
  const keys = await s3.keys('logs/')
  t.equal(keys.length, 1)
  t.match(keys[0], new RegExp(`^logs/[^/]+/${warm.id}/server-[^/]+\\.txt\\.gz$`))
})

t.test('uploadLog › insufficient permissions › no credentials, a bad token or a wrong container secret is 401; nothing written', async (t) => {
  const app = await localApp(t)
  const a = await given(app).assignedContainer()
  const b = await given(app).assignedContainer()

  const attempts: Array<[string, Record<string, string>, string]> = [
    ['no credentials', {}, 'client'],
    ['a malformed token', bearer('not-a-jwt'), 'client'],
    ['a secret with another container id', containerHeaders(b.container.id, a.warm.secret), 'server'],
    ['a wrong secret', containerHeaders(a.container.id, randomBytes(32).toString('base64url')), 'server'],
    ['a secret without a container id', { 'x-container-secret': a.warm.secret }, 'server']
  ]
  for (const [what, headers, sender] of attempts) {
    const res = await upload(app, headers, { sender }, 'sneaky')
    t.equal(res.statusCode, 401, what)
    t.match(res.headers['content-type'], /application\/problem\+json/, what)
    t.equal(res.json().code, 'unauthorized', what)
  }
  t.same(await logRows(app), [])
})

t.test('uploadLog › insufficient permissions › a user sending server logs or a container sending client logs is 403', async (t) => {
  const app = await localApp(t)
  const { user, warm } = await given(app).assignedContainer()

  const asUser = await upload(app, user.headers, { sender: 'server' }, 'pretending to be the server')
  const asContainer = await upload(app, containerHeaders(warm.id, warm.secret), { sender: 'client' }, 'pretending to be the client')

  for (const res of [asUser, asContainer]) {
    t.equal(res.statusCode, 403)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.equal(res.json().code, 'forbidden')
  }
  t.same(await logRows(app), [])
})

t.test('uploadLog › insufficient permissions › a token without the containers scope is 403', async (t) => {
  const app = await localApp(t)
  const user = await given(app).user()
  const token = await given(app).token({ sub: user.id, scopes: ['account'] })
  const res = await upload(app, bearer(token), { sender: 'client' }, 'hello')
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'forbidden')
  t.same(await logRows(app), [])
})

t.test('uploadLog › insufficient permissions › a user naming the container of another user is 404, as if it did not exist', async (t) => {
  const app = await localApp(t)
  const mallory = await given(app).signedIn()
  const victim = await given(app).assignedContainer()

  const res = await upload(app, mallory.headers, { sender: 'client', containerId: victim.container.id }, 'planted log')

  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal(res.json().code, 'not_found')
  t.same(await logRows(app), [])
})

t.test('uploadLog › non-existing › a containerId that names no container is 404 not_found', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  const res = await upload(app, user.headers, { sender: 'client', containerId: randomUUID() }, 'hello')
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.same(await logRows(app), [])
})

t.test('uploadLog › invalid input › a body over LOG_MAX_BYTES is 413 problem+json, text or gzip, and nothing is written', async (t) => {
  const app = await localApp(t, { LOG_MAX_BYTES: '2048' })
  const { user, warm } = await given(app).assignedContainer()

  const text = await upload(app, user.headers, { sender: 'client' }, 'x'.repeat(2049))
  const gz = await upload(app, containerHeaders(warm.id, warm.secret), { sender: 'server' }, gzipSync(randomBytes(4096), { level: 0 }), 'application/gzip')

  for (const [what, res] of [['text', text], ['gzip', gz]] as const) {
    t.equal(res.statusCode, 413, what)
    t.match(res.headers['content-type'], /application\/problem\+json/, what)
    t.equal(res.json().code, 'payload_too_large', what)
  }
  t.same(await logRows(app), [])
  t.same(await app.db.selectFrom('job').select('id').where('kind', '=', 'upload_log').execute(), [], 'no job either')

  // The limit itself is accepted.
  const atLimit = await upload(app, user.headers, { sender: 'client' }, 'y'.repeat(2048))
  t.equal(atLimit.statusCode, 202)
})

t.test('uploadLog › invalid input › an application/gzip body that is not gzip is 400 naming the body', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  const bodies: Array<[string, Buffer]> = [
    ['plain text', Buffer.from('this is not gzip at all, just text sent with the wrong type')],
    ['the magic bytes alone', Buffer.from([0x1f, 0x8b])],
    ['a zip file', Buffer.concat([Buffer.from('PK\u0003\u0004'), randomBytes(40)])]
  ]
  for (const [what, body] of bodies) {
    const res = await upload(app, user.headers, { sender: 'client' }, body, 'application/gzip')
    t.equal(res.statusCode, 400, what)
    t.match(res.headers['content-type'], /application\/problem\+json/, what)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field: '/body' }] }, what)
  }
  t.same(await logRows(app), [])
})

t.test('uploadLog › invalid input › a gzip stream cut short (valid header, corrupt data) is 400, not stored as an unreadable object', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  const whole = gzipSync(randomBytes(2000))
  const truncated = whole.subarray(0, 200)
  t.throws(() => gunzipSync(truncated), 'the body really is not readable gzip')

  const res = await upload(app, user.headers, { sender: 'client' }, truncated, 'application/gzip')

  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'validation_failed', errors: [{ field: '/body' }] })
  t.same(await logRows(app), [])
})

t.test('uploadLog › invalid input › a body of another content type is 415', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  for (const [type, body] of [['application/json', JSON.stringify({ log: 'hello' })], ['application/xml', '<log>hello</log>'], ['application/octet-stream', 'hello']] as const) {
    const res = await upload(app, user.headers, { sender: 'client' }, body, type)
    t.equal(res.statusCode, 415, type)
    t.match(res.headers['content-type'], /application\/problem\+json/, type)
    t.equal(res.json().code, 'unsupported_media_type', type)
  }
  t.same(await logRows(app), [])
})

t.test('uploadLog › invalid input › a missing or unknown sender, or a malformed containerId, is 400 naming the field', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  const cases: Array<[Record<string, string>, string]> = [
    [{}, '/query/sender'],
    [{ sender: 'robot' }, '/query/sender'],
    [{ sender: 'client', containerId: 'not-a-uuid' }, '/query/containerId']
  ]
  for (const [query, field] of cases) {
    const res = await upload(app, user.headers, query, 'hello')
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field }] }, JSON.stringify(query))
  }
  const badHeader = await upload(app, { 'x-container-id': 'container-7', 'x-container-secret': 'whatever' }, { sender: 'server' }, 'hello')
  t.equal(badHeader.statusCode, 401, 'a malformed X-Container-Id: no container has it (checked before validation)')
  t.same(await logRows(app), [])
})

t.test('uploadLog › invalid input › an empty text body or no body at all is 400', async (t) => {
  const app = await localApp(t)
  const user = await given(app).signedIn()
  const empty = await upload(app, user.headers, { sender: 'client' }, '')
  t.equal(empty.statusCode, 400)
  t.match(empty.json(), { code: 'validation_failed' })
  const none = await app.inject({ method: 'POST', url: '/v1/logs', query: { sender: 'client' }, headers: user.headers })
  t.equal(none.statusCode, 400)
  t.match(none.json(), { code: 'validation_failed' })
  const emptyGzip = await upload(app, user.headers, { sender: 'client' }, Buffer.alloc(0), 'application/gzip')
  t.equal(emptyGzip.statusCode, 400, 'an empty gzip body')
  t.same(await logRows(app), [])
})

// A gzip body is inflated as a stream, counted and dropped chunk by chunk, and refused once it passes
// LOG_MAX_INFLATED_BYTES (here 64 KiB): before, it was inflated into memory up to 256 MiB.
const cap = 64 * 1024

t.test('uploadLog › invalid input › a gzip bomb (1 MiB of zeros in about 1 KiB) is 413 payload_too_large; no row, no job, no object', async (t) => {
  const app = await localApp(t, { LOG_MAX_INFLATED_BYTES: String(cap) })
  const { user, warm } = await given(app).assignedContainer()
  const bomb = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 })
  t.ok(bomb.length < 2048, `the bomb is ${bomb.length} bytes, well under LOG_MAX_BYTES`)
  // Members of a gzip stream add up: a small first member does not let the second one through.
  const twoMembers = Buffer.concat([gzipSync('first member, small\n'), bomb])

  const attempts: Array<[string, Record<string, string>, string, Buffer]> = [
    ['from a client app', user.headers, 'client', bomb],
    ['from a container', containerHeaders(warm.id, warm.secret), 'server', bomb],
    ['as the second member of the stream', user.headers, 'client', twoMembers]
  ]
  for (const [what, headers, sender, body] of attempts) {
    const res = await upload(app, headers, { sender }, body, 'application/gzip')
    t.equal(res.statusCode, 413, what)
    t.match(res.headers['content-type'], /application\/problem\+json/, what)
    t.match(res.json(), { code: 'payload_too_large', status: 413, detail: new RegExp(`more than ${cap} bytes once inflated`) }, what)
  }
  app.queue.startWorker(1)
  t.same(await logRows(app), [])
  t.same(await app.db.selectFrom('job').select('id').where('kind', '=', 'upload_log').execute(), [], 'no job')
  t.same(await storedFiles(app), [], 'nothing in the store')
})

t.test('uploadLog › valid › a gzip body that inflates to the cap is stored intact; one byte more is 413', async (t) => {
  const app = await localApp(t, { LOG_MAX_INFLATED_BYTES: String(cap) })
  const user = await given(app).signedIn()
  const content = Buffer.from(randomBytes(cap / 2).toString('hex'))
  t.equal(content.length, cap)
  const gz = gzipSync(content)

  const res = await upload(app, user.headers, { sender: 'client' }, gz, 'application/gzip')

  t.equal(res.statusCode, 202)
  app.queue.startWorker(1)
  t.ok(await stored(app, res.json().id))
  const download = await app.inject({ method: 'GET', url: `/v1/logs/${res.json().id}/content`, headers: user.headers })
  t.equal(download.statusCode, 200)
  t.same(download.rawPayload, gz, 'the object is the body as sent, byte for byte')
  t.same(gunzipSync(download.rawPayload), content)

  const over = await upload(app, user.headers, { sender: 'client' }, gzipSync(Buffer.concat([content, Buffer.from('!')])), 'application/gzip')
  t.equal(over.statusCode, 413, 'one byte over the cap')
  t.equal((await logRows(app)).length, 1, 'only the first is kept')
})

t.test('uploadLog › invalid input › a text log larger than LOG_MAX_INFLATED_BYTES is 413 too: the cap is on the log, however it is sent', async (t) => {
  const app = await localApp(t, { LOG_MAX_INFLATED_BYTES: String(cap) })
  const user = await given(app).signedIn()
  t.equal((await upload(app, user.headers, { sender: 'client' }, 'é'.repeat(cap / 2 + 1))).statusCode, 413, 'counted in bytes, not characters')
  t.same(await logRows(app), [])
  t.equal((await upload(app, user.headers, { sender: 'client' }, 'é'.repeat(cap / 2))).statusCode, 202, 'the cap itself is accepted')
})

t.test('uploadLog › invalid input › a gzip body with corrupt data, a wrong checksum or cut inside a bomb is 400 naming the body', async (t) => {
  const app = await localApp(t, { LOG_MAX_INFLATED_BYTES: String(cap) })
  const user = await given(app).signedIn()
  const whole = gzipSync(Buffer.from('a log line that repeats\n'.repeat(500)))
  const corrupt = Buffer.from(whole)
  corrupt.fill(0xff, 12, 40)
  const badCrc = Buffer.from(whole)
  badCrc.writeUInt32LE(badCrc.readUInt32LE(badCrc.length - 8) ^ 1, badCrc.length - 8)
  const bomb = gzipSync(Buffer.alloc(1024 * 1024), { level: 9 })
  // Cut before the inflater ever reaches the cap: the stream ends early, it is not too large.
  const cutBomb = bomb.subarray(0, 30)

  for (const [what, body] of [['corrupt deflate data', corrupt], ['a wrong CRC-32', badCrc], ['a bomb cut short', cutBomb]] as const) {
    const res = await upload(app, user.headers, { sender: 'client' }, body, 'application/gzip')
    t.equal(res.statusCode, 400, what)
    t.match(res.headers['content-type'], /application\/problem\+json/, what)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field: '/body' }] }, what)
  }
  t.same(await logRows(app), [])
})
