// POST /v1/admin/cache/purge (purgeCache): an operator drops cached public reads by tag, or everything, at
// the origin at once and at the edge through a queued cache-purge job.
import { createServer, type IncomingHttpHeaders } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type Test = Parameters<typeof build>[0]
const url = '/v1/admin/cache/purge'

/** A Fastly API stand-in: records every request; `fail(n)` says whether the n-th answers 500. */
async function fastlyStandIn (t: Test, fail: (n: number) => boolean = () => false) {
  const requests: Array<{ method: string, url: string, headers: IncomingHttpHeaders, body: string }> = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      requests.push({ method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() })
      if (fail(requests.length)) res.writeHead(500, { 'content-type': 'application/json' }).end('{"msg":"try later"}')
      else res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  const env = {
    CACHE_PURGER: 'fastly',
    FASTLY_API_URL: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    FASTLY_API_TOKEN: 'fastly-test-token',
    FASTLY_SERVICE_ID: 'SVC-test'
  }
  return { requests, env }
}

async function admin (app: FastifyInstance) {
  return (await given(app).signedIn({ role: 'admin' })).headers
}

const purge = (app: FastifyInstance, headers: Record<string, string>, payload: unknown) =>
  app.inject({ method: 'POST', url, headers, payload: payload as object })

/** Only the queue says whether a purge reached the edge side: every count of cache-purge, summed. */
async function purgeJobs (app: FastifyInstance) {
  const c = await app.queue.counts('cache-purge')
  return c.waiting + c.active + c.delayed + c.failed + c.succeeded
}

/** An app listed by GET /v1/apps whose name we change behind the API's back. */
async function listedApp (app: FastifyInstance) {
  const row = await given(app).app({ name: 'Name before' })
  const rename = (name: string) => app.db.updateTable('app').set({ name }).where('id', '=', row.id).execute()
  const listedName = async () => {
    const res = await app.inject({ method: 'GET', url: '/v1/apps?limit=100' })
    return (res.json().items as Array<{ id: string, name: string }>).find((a) => a.id === row.id)?.name
  }
  return { id: row.id, rename, listedName }
}

// --- valid --------------------------------------------------------------------------------------------

t.test('purgeCache › valid › an admin purges tags: 202 naming them, and the origin copy is dropped', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')
  t.equal(await listed.listedName(), 'Name before', 'the second read is served from the origin store')

  const res = await purge(app, await admin(app), { tags: ['apps'] })
  t.equal(res.statusCode, 202)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), { purger: 'none', tags: ['apps'], everything: false })
  t.equal(await listed.listedName(), 'Name after', 'the purge dropped the origin copy')
})

t.test('purgeCache › valid › a tag drops only the representations carrying it', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')

  const res = await purge(app, await admin(app), { tags: ['regions', `app:${listed.id}`] })
  t.equal(res.statusCode, 202)
  t.equal(await listed.listedName(), 'Name before', 'the list carries `apps` only: still kept')
  const one = await app.inject({ method: 'GET', url: `/v1/apps/${listed.id}` })
  t.equal(one.json().name, 'Name after')
})

t.test('purgeCache › valid › {all: true} drops every origin copy and answers everything: true', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')
  t.equal(await listed.listedName(), 'Name before')

  const res = await purge(app, await admin(app), { all: true })
  t.equal(res.statusCode, 202)
  t.same(res.json(), { purger: 'none', tags: [], everything: true })
  t.equal(await listed.listedName(), 'Name after')
})

t.test('purgeCache › valid › one cache-purge job is queued per purge, for tags and for everything', async (t) => {
  const app = await build(t)
  const headers = await admin(app)
  t.equal(await purgeJobs(app), 0)
  t.equal((await purge(app, headers, { tags: ['apps', 'app:chrome'] })).statusCode, 202)
  t.same(await app.queue.counts('cache-purge'), { waiting: 1, active: 0, delayed: 0, failed: 0, succeeded: 0 })
  t.equal((await purge(app, headers, { all: true })).statusCode, 202)
  t.equal((await app.queue.counts('cache-purge')).waiting, 2)
})

t.test('purgeCache › valid › end to end: with CACHE_PURGER=fastly the worker sends exactly those keys to Fastly', async (t) => {
  const fastly = await fastlyStandIn(t)
  const app = await build(t, fastly.env)
  app.queue.startWorker(1)

  const res = await purge(app, await admin(app), { tags: ['app:chrome', 'apps'] })
  t.equal(res.statusCode, 202)
  t.same(res.json(), { purger: 'fastly', tags: ['app:chrome', 'apps'], everything: false })
  t.ok(await until(() => fastly.requests.length >= 1), 'Fastly was called')
  t.ok(await until(async () => (await app.queue.counts('cache-purge')).active === 0))
  t.equal(fastly.requests.length, 1)
  const [req] = fastly.requests
  t.equal(req!.method, 'POST')
  t.equal(req!.url, '/service/SVC-test/purge')
  t.equal(req!.headers['fastly-key'], 'fastly-test-token')
  t.same(JSON.parse(req!.body), { surrogate_keys: ['app:chrome', 'apps'] })
})

t.test('purgeCache › valid › end to end: {all: true} with CACHE_PURGER=fastly is one purge_all', async (t) => {
  const fastly = await fastlyStandIn(t)
  const app = await build(t, fastly.env)
  app.queue.startWorker(1)

  const res = await purge(app, await admin(app), { all: true })
  t.same(res.json(), { purger: 'fastly', tags: [], everything: true })
  t.ok(await until(() => fastly.requests.length >= 1))
  t.ok(await until(async () => (await app.queue.counts('cache-purge')).active === 0))
  t.equal(fastly.requests.length, 1)
  t.equal(fastly.requests[0]!.method, 'POST')
  t.equal(fastly.requests[0]!.url, '/service/SVC-test/purge_all')
  t.equal(fastly.requests[0]!.headers['fastly-key'], 'fastly-test-token')
})

t.test('purgeCache › faults › Fastly answering 500 once: the job retries and the keys arrive again', async (t) => {
  const fastly = await fastlyStandIn(t, (n) => n === 1)
  const app = await build(t, fastly.env)
  app.queue.startWorker(1)

  t.equal((await purge(app, await admin(app), { tags: ['apps'] })).statusCode, 202, 'the operator is not kept waiting on the edge')
  t.ok(await until(() => fastly.requests.length >= 2, 15_000), 'a second attempt after the 500')
  // bee-queue removes a job that succeeded: done is nothing left to run and nothing failed.
  t.ok(await until(async () => { const c = await app.queue.counts('cache-purge'); return c.waiting + c.active + c.delayed === 0 }, 5000), 'the job then succeeded')
  t.equal((await app.queue.counts('cache-purge')).failed, 0)
  t.same(fastly.requests.map((r) => JSON.parse(r.body)), [{ surrogate_keys: ['apps'] }, { surrogate_keys: ['apps'] }])
})

// --- invalid input ------------------------------------------------------------------------------------

t.test('purgeCache › invalid input › malformed bodies get 400 problem+json naming the field; nothing is purged or queued', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const headers = await admin(app)
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')

  const cases: Array<[string, unknown, RegExp]> = [
    ['an empty object', {}, /body/],
    ['both tags and all', { tags: ['apps'], all: true }, /body/],
    ['empty tags', { tags: [] }, /\/body\/tags/],
    ['a tag with spaces', { tags: ['apps regions'] }, /\/body\/tags\/0/],
    ['a tag of 201 characters', { tags: ['a'.repeat(201)] }, /\/body\/tags\/0/],
    ['an empty tag', { tags: [''] }, /\/body\/tags\/0/],
    ['the same tag twice', { tags: ['apps', 'apps'] }, /\/body\/tags/],
    ['1001 tags', { tags: Array.from({ length: 1001 }, (_, i) => `t${i}`) }, /\/body\/tags/],
    ['tags not an array', { tags: 'apps' }, /\/body\/tags/],
    ['all: false', { all: false }, /\/body\/all/],
    ['all: "true" (a string)', { all: 'true' }, /\/body\/all/],
    ['an extra property', { tags: ['apps'], region: 'us-east-1' }, /\/body\/region/],
    ['an array body', [{ tags: ['apps'] }], /body/]
  ]
  for (const [what, payload, field] of cases) {
    const res = await purge(app, headers, payload)
    t.equal(res.statusCode, 400, `${what}: 400`)
    t.match(res.headers['content-type'], /^application\/problem\+json/, `${what}: problem+json`)
    const problem = res.json()
    t.equal(problem.code, 'validation_failed', `${what}: code`)
    t.ok(problem.errors?.some((e: { field: string }) => field.test(e.field)), `${what}: names ${field} (got ${JSON.stringify(problem.errors)})`)
  }
  t.equal(await listed.listedName(), 'Name before', 'the origin copy is still served')
  t.equal(await purgeJobs(app), 0, 'no purge job')
})

t.test('purgeCache › invalid input › no body gets 400, a wrong content type 415, both problem+json; nothing queued', async (t) => {
  const app = await build(t)
  const headers = await admin(app)

  const none = await app.inject({ method: 'POST', url, headers })
  t.equal(none.statusCode, 400)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.json().status, 400)

  const emptyJson = await app.inject({ method: 'POST', url, headers: { ...headers, 'content-type': 'application/json' }, payload: '' })
  t.equal(emptyJson.statusCode, 400, 'an empty JSON body')
  t.match(emptyJson.headers['content-type'], /^application\/problem\+json/)

  const broken = await app.inject({ method: 'POST', url, headers: { ...headers, 'content-type': 'application/json' }, payload: '{"tags": [' })
  t.equal(broken.statusCode, 400, 'JSON that does not parse')
  t.match(broken.headers['content-type'], /^application\/problem\+json/)

  for (const type of ['text/plain', 'application/x-www-form-urlencoded']) {
    const res = await app.inject({ method: 'POST', url, headers: { ...headers, 'content-type': type }, payload: 'tags=apps' })
    t.equal(res.statusCode, 415, type)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'unsupported_media_type')
  }
  t.equal(await purgeJobs(app), 0)
})

// --- insufficient permissions -------------------------------------------------------------------------

t.test('purgeCache › insufficient permissions › no token or a bad one 401, a user or developer 403; nothing purged', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')

  const user = await given(app).signedIn()
  const developer = await given(app).signedIn({ role: 'developer' })
  const cases: Array<[string, Record<string, string>, number, string]> = [
    ['no token', {}, 401, 'unauthorized'],
    ['a token that does not verify', bearer('not.a.jwt'), 401, 'unauthorized'],
    ['a Basic header', { authorization: 'Basic YWRtaW46YWRtaW4=' }, 401, 'unauthorized'],
    ['a user', user.headers, 403, 'forbidden'],
    ['a developer', developer.headers, 403, 'forbidden'],
    ['a token with every scope but admin', bearer(await given(app).token({ role: 'admin', scopes: ['account', 'containers', 'fleet:read', 'fleet:write', 'catalog:write', 'users:read', 'users:write'] })), 403, 'forbidden']
  ]
  for (const [who, headers, status, code] of cases) {
    for (const payload of [{ tags: ['apps'] }, { all: true }]) {
      const res = await purge(app, headers, payload)
      t.equal(res.statusCode, status, `${who} ${JSON.stringify(payload)}`)
      t.match(res.headers['content-type'], /^application\/problem\+json/)
      t.equal(res.json().code, code)
    }
  }
  t.equal(await listed.listedName(), 'Name before', 'the origin copy is still served')
  t.equal(await purgeJobs(app), 0, 'no purge job')
})

t.test('purgeCache › insufficient permissions › a signed-out admin session gets 401', async (t) => {
  const app = await build(t)
  const root = await given(app).signedIn({ role: 'admin' })
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: root.headers })).statusCode, 204)
  const res = await purge(app, root.headers, { tags: ['apps'] })
  t.equal(res.statusCode, 401)
  t.equal(await purgeJobs(app), 0)
})

// --- non-existing -------------------------------------------------------------------------------------

t.test('purgeCache › non-existing › a tag nothing carries is still 202: an idempotent no-op (there is no 404 for a tag)', async (t) => {
  // Tags are not resources: the edge cannot tell whether it holds a key, and purging one nobody carries
  // is harmless, so the operation never answers 404 (the spec declares none).
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '5000' })
  const listed = await listedApp(app)
  t.equal(await listed.listedName(), 'Name before')
  await listed.rename('Name after')
  const headers = await admin(app)

  for (let i = 0; i < 2; i++) {
    const res = await purge(app, headers, { tags: ['app:no-such-app-anywhere'] })
    t.equal(res.statusCode, 202, `attempt ${i + 1}`)
    t.same(res.json(), { purger: 'none', tags: ['app:no-such-app-anywhere'], everything: false })
  }
  t.equal(await listed.listedName(), 'Name before', 'nothing else was dropped')
  t.equal((await app.queue.counts('cache-purge')).waiting, 2, 'the edge is still told (it is a no-op there too)')
})
