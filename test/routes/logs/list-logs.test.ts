import { randomUUID } from 'node:crypto'
import { gunzipSync, gzipSync } from 'node:zlib'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { s3rverCredentials, startS3 } from '../../helpers/s3.js'
import { until } from '../../helpers/wait.js'

// The SDK reads its credentials from the environment; s3rver accepts (and checks signatures made with) these.
process.env.AWS_ACCESS_KEY_ID = s3rverCredentials.accessKeyId
process.env.AWS_SECRET_ACCESS_KEY = s3rverCredentials.secretAccessKey

type App = Awaited<ReturnType<typeof build>>
interface Log { id: string, sender: string, userId: string | null, containerId: string | null, bytes: number, status: string, createdAt: string, storedAt: string | null, downloadUrl: string | null }

const upload = (app: App, headers: Record<string, string>, query: Record<string, string>, payload: string) =>
  app.inject({ method: 'POST', url: '/v1/logs', query, payload, headers: { ...headers, 'content-type': 'text/plain' } })
const containerHeaders = (id: string, secret: string) => ({ 'x-container-id': id, 'x-container-secret': secret })
const ids = (items: Log[]) => items.map((l) => l.id)

/** Uploads a log and waits until the (running) worker has stored it. */
async function storedLog (app: App, headers: Record<string, string>, query: Record<string, string>, text: string): Promise<Log> {
  const res = await upload(app, headers, query, text)
  if (res.statusCode !== 202) throw new Error(`upload answered ${res.statusCode}: ${res.body}`)
  const id = res.json().id as string
  const ok = await until(async () => (await app.db.selectFrom('log_upload').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status === 'stored')
  if (!ok) throw new Error(`log ${id} was not stored`)
  return res.json()
}

/** A log row written directly (no object behind it): for lists, where dates and owners must be exact. */
function logRowAt (app: App, fields: { userId: string | null, containerId?: string | null, sender?: 'client' | 'server', createdAt: string, status?: 'pending' | 'stored' }) {
  const id = randomUUID()
  return app.db.insertInto('log_upload').values({
    id,
    user_id: fields.userId,
    container_id: fields.containerId ?? null,
    sender: fields.sender ?? 'client',
    object_key: `logs/${fields.userId ?? 'unassigned'}/${fields.containerId ?? 'none'}/${fields.sender ?? 'client'}-${id}.txt.gz`,
    bytes: 20,
    body: fields.status === 'pending' ? gzipSync('waiting') : null,
    status: fields.status ?? 'stored',
    created_at: new Date(fields.createdAt),
    stored_at: fields.status === 'pending' ? null : new Date(fields.createdAt)
  }).returning(['id', 'created_at']).executeTakeFirstOrThrow()
}

t.test('listMyLogs › valid › my logs only, newest first, each with a presigned URL that plain fetch() downloads as the gzipped log', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, { ...s3.env, LOG_DOWNLOAD_TTL_S: '120' })
  app.queue.startWorker(2)
  const { user, warm, container } = await given(app).assignedContainer()
  const stranger = await given(app).signedIn()

  const first = await storedLog(app, user.headers, { sender: 'client' }, 'first client log\n')
  const second = await storedLog(app, user.headers, { sender: 'client', containerId: container.id }, 'second client log\n')
  const fromContainer = await storedLog(app, containerHeaders(warm.id, warm.secret), { sender: 'server' }, 'server log of my container\n')
  await storedLog(app, stranger.headers, { sender: 'client' }, 'somebody else\n')
  const pending = await logRowAt(app, { userId: user.account.id, createdAt: new Date().toISOString(), status: 'pending' })

  const res = await app.inject({ method: 'GET', url: '/v1/logs', headers: user.headers })

  t.equal(res.statusCode, 200)
  const page = res.json() as { items: Log[], nextCursor: string | null }
  t.same(ids(page.items), [pending.id, fromContainer.id, second.id, first.id], 'mine (my container\'s included), newest first; nobody else\'s')
  t.equal(page.nextCursor, null)
  t.match(page.items[0], { status: 'pending', downloadUrl: null, storedAt: null })
  const texts = { [first.id]: 'first client log\n', [second.id]: 'second client log\n', [fromContainer.id]: 'server log of my container\n' }
  for (const log of page.items.slice(1)) {
    t.match(log, { status: 'stored', userId: user.account.id, storedAt: String })
    const url = new URL(log.downloadUrl!)
    t.equal(url.origin, s3.endpoint, 'presigned against the bucket endpoint')
    t.equal(url.searchParams.get('X-Amz-Expires'), '120', 'valid for LOG_DOWNLOAD_TTL_S')
    t.ok(url.searchParams.get('X-Amz-Signature'))
    const download = await fetch(url)
    t.equal(download.status, 200)
    const body = Buffer.from(await download.arrayBuffer())
    t.equal(body.length, log.bytes)
    t.equal(gunzipSync(body).toString('utf8'), texts[log.id])
  }

  const theirs = await app.inject({ method: 'GET', url: '/v1/logs', headers: stranger.headers })
  t.equal(theirs.json().items.length, 1)
  t.equal(theirs.json().items[0].userId, stranger.account.id)
})

t.test('listMyLogs › valid › pages with limit and cursor, each log once', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const made = []
  for (let i = 0; i < 5; i++) made.push(await logRowAt(app, { userId: user.account.id, createdAt: `2026-03-0${i + 1}T12:00:00.000Z` }))
  await logRowAt(app, { userId: (await given(app).user()).id, createdAt: '2026-03-03T12:00:00.000Z' })

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const query: Record<string, string> = cursor ? { limit: '2', cursor } : { limit: '2' }
    const res = await app.inject({ method: 'GET', url: '/v1/logs', query, headers: user.headers })
    t.equal(res.statusCode, 200)
    const body = res.json() as { items: Log[], nextCursor: string | null }
    t.ok(body.items.length <= 2)
    seen.push(...ids(body.items))
    cursor = body.nextCursor
    pages++
  } while (cursor !== null && pages < 10)
  t.equal(pages, 3)
  t.same(seen, made.map((r) => r.id).reverse())
})

t.test('listMyLogs › insufficient permissions › no token is 401, a token without the containers scope 403', async (t) => {
  const app = await fileApp()
  const none = await app.inject({ method: 'GET', url: '/v1/logs' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /application\/problem\+json/)
  t.equal(none.json().code, 'unauthorized')
  const narrow = await app.inject({ method: 'GET', url: '/v1/logs', headers: bearer(await given(app).token({ scopes: ['account'] })) })
  t.equal(narrow.statusCode, 403)
  t.equal(narrow.json().code, 'forbidden')
})

t.test('listMyLogs › invalid input › a bad limit or a cursor this API did not issue is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  for (const [query, field] of [[{ limit: '0' }, '/query/limit'], [{ limit: '101' }, '/query/limit'], [{ limit: 'ten' }, '/query/limit'], [{ cursor: 'not a cursor!' }, '/query/cursor']] as const) {
    const res = await app.inject({ method: 'GET', url: '/v1/logs', query, headers: user.headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.match(res.json(), { code: 'validation_failed', errors: [{ field }] }, JSON.stringify(query))
  }
  const forged = await app.inject({ method: 'GET', url: '/v1/logs', query: { cursor: Buffer.from('yesterday|x').toString('base64url') }, headers: user.headers })
  t.equal(forged.statusCode, 400)
  t.equal(forged.json().code, 'bad_request')
})

t.test('listLogs › valid › an admin sees everyone, with presigned URLs that download', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  app.queue.startWorker(2)
  const admin = await given(app).signedIn({ role: 'admin' })
  const { user, warm } = await given(app).assignedContainer()
  const other = await given(app).signedIn()
  const a = await storedLog(app, user.headers, { sender: 'client' }, 'from the user\n')
  const b = await storedLog(app, containerHeaders(warm.id, warm.secret), { sender: 'server' }, 'from the container\n')
  const c = await storedLog(app, other.headers, { sender: 'client' }, 'from the other user\n')

  const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', headers: admin.headers })

  t.equal(res.statusCode, 200)
  const items = res.json().items as Log[]
  t.same(ids(items), [c.id, b.id, a.id])
  const texts = ['from the other user\n', 'from the container\n', 'from the user\n']
  for (const [i, log] of items.entries()) {
    const download = await fetch(log.downloadUrl!)
    t.equal(download.status, 200)
    t.equal(gunzipSync(Buffer.from(await download.arrayBuffer())).toString('utf8'), texts[i])
  }
})

t.test('listLogs › valid › filters by user, container, sender and date range (from inclusive, to exclusive)', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const { user, container } = await given(app).assignedContainer()
  const other = await given(app).user()
  const jan1 = await logRowAt(app, { userId: user.account.id, createdAt: '2026-01-01T00:00:00.000Z' })
  const jan2 = await logRowAt(app, { userId: user.account.id, containerId: container.id, sender: 'server', createdAt: '2026-01-02T00:00:00.000Z' })
  const jan3 = await logRowAt(app, { userId: user.account.id, containerId: container.id, createdAt: '2026-01-03T00:00:00.000Z' })
  const otherJan2 = await logRowAt(app, { userId: other.id, createdAt: '2026-01-02T12:00:00.000Z' })

  const list = async (query: Record<string, string>) => {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', query, headers: admin.headers })
    t.equal(res.statusCode, 200, JSON.stringify(query))
    return ids(res.json().items)
  }
  t.same(await list({}), [jan3.id, otherJan2.id, jan2.id, jan1.id])
  t.same(await list({ user: user.account.id }), [jan3.id, jan2.id, jan1.id])
  t.same(await list({ user: other.id }), [otherJan2.id])
  t.same(await list({ container: container.id }), [jan3.id, jan2.id])
  t.same(await list({ sender: 'server' }), [jan2.id])
  t.same(await list({ sender: 'client', container: container.id }), [jan3.id])
  t.same(await list({ from: '2026-01-02T00:00:00.000Z' }), [jan3.id, otherJan2.id, jan2.id], 'from is inclusive')
  t.same(await list({ to: '2026-01-02T00:00:00.000Z' }), [jan1.id], 'to is exclusive')
  t.same(await list({ from: '2026-01-02T00:00:00Z', to: '2026-01-03T00:00:00Z', user: user.account.id }), [jan2.id])
  t.same(await list({ user: randomUUID() }), [])
})

t.test('listLogs › valid › cursor pagination walks every log once, filters kept', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).user()
  const made = []
  for (let i = 0; i < 7; i++) made.push(await logRowAt(app, { userId: user.id, createdAt: `2026-02-0${i + 1}T08:00:00.000Z` }))
  await logRowAt(app, { userId: (await given(app).user()).id, createdAt: '2026-02-04T09:00:00.000Z' })

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const query: Record<string, string> = { limit: '3', user: user.id, ...(cursor ? { cursor } : {}) }
    const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', query, headers: admin.headers })
    t.equal(res.statusCode, 200)
    seen.push(...ids(res.json().items))
    cursor = res.json().nextCursor
    pages++
  } while (cursor !== null && pages < 10)
  t.equal(pages, 3)
  t.same(seen, made.map((r) => r.id).reverse())
})

t.test('listLogs › valid › pagination does not skip logs created within the same millisecond', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).user()
  // Logs accepted together (here: one statement, so one now()) share their created_at to the microsecond.
  const rows = await app.db.insertInto('log_upload').values([1, 2, 3].map((n) => ({
    user_id: user.id, sender: 'client' as const, object_key: `logs/${user.id}/none/client-burst-${n}-${randomUUID()}.txt.gz`, bytes: 20, status: 'stored' as const
  }))).returning('id').execute()
  const made = rows.map((r) => r.id).sort().reverse() // same created_at: the id breaks the tie, descending

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const query: Record<string, string> = { limit: '1', user: user.id, ...(cursor ? { cursor } : {}) }
    const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', query, headers: admin.headers })
    t.equal(res.statusCode, 200)
    seen.push(...ids(res.json().items))
    cursor = res.json().nextCursor
    pages++
  } while (cursor !== null && pages < 10)
  t.same(seen, made, 'every log once, in order')
})

t.test('listLogs › insufficient permissions › a user or developer is 403, no token 401', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const dev = await given(app).signedIn({ role: 'developer' })
  await logRowAt(app, { userId: user.account.id, createdAt: '2026-01-01T00:00:00.000Z' })
  for (const who of [user, dev]) {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', headers: who.headers })
    t.equal(res.statusCode, 403, who.account.role)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.equal(res.json().code, 'forbidden')
  }
  const mine = await app.inject({ method: 'GET', url: `/v1/admin/logs?user=${user.account.id}`, headers: user.headers })
  t.equal(mine.statusCode, 403, 'not even for their own logs: that is listMyLogs')
  const none = await app.inject({ method: 'GET', url: '/v1/admin/logs' })
  t.equal(none.statusCode, 401)
  t.equal(none.json().code, 'unauthorized')
})

t.test('listLogs › invalid input › a malformed filter is 400 naming it', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const cases: Array<[Record<string, string>, string]> = [
    [{ user: 'bob' }, '/query/user'],
    [{ container: '42' }, '/query/container'],
    [{ sender: 'robot' }, '/query/sender'],
    [{ from: 'yesterday' }, '/query/from'],
    [{ to: '2026-01-01' }, '/query/to'],
    [{ limit: '0' }, '/query/limit'],
    [{ cursor: '***' }, '/query/cursor']
  ]
  for (const [query, field] of cases) {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/logs', query, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field }] }, JSON.stringify(query))
  }
})
