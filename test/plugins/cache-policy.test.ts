// The cache policy an operation declares in `x-cache` (plugins/edge-cache.ts, checked at start-up by
// plugins/openapi-routes.ts): an authenticated operation may only be cached privately (by the client), and
// public reads tell every kind of edge how long to keep them and by which tags to forget them.
//
// The tests that need a modified spec build the app on a changed copy (test/helpers/app-with-spec.ts).
import t from 'tap'
import { appWithSpec, type Document, type SpecTest } from '../helpers/app-with-spec.js'
import { build, fileApp } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'

const getMe = (document: Document) => document.paths['/v1/users/me'].get

// --- start-up -----------------------------------------------------------------------------------------

t.test('cache policy › start-up › the spec as shipped passes the check', async (t) => {
  await t.resolves(appWithSpec(t, () => {}))
})

t.test('cache policy › start-up › refuses an operation with security and x-cache without private: true, naming it', async (t) => {
  await t.rejects(appWithSpec(t, (d) => { getMe(d)['x-cache'] = { maxAge: 30, sMaxAge: 300, tags: ['user:{id}'] } }),
    /operation getMe declares x-cache but also security: a shared cache would serve one user's answer to another \(add private: true/)
})

t.test('cache policy › start-up › private: false is refused like no private at all', async (t) => {
  await t.rejects(appWithSpec(t, (d) => { getMe(d)['x-cache'] = { maxAge: 30, private: false } }), /operation getMe declares x-cache but also security/)
})

t.test('cache policy › start-up › security inherited from the document counts as security', async (t) => {
  await t.rejects(appWithSpec(t, (d) => {
    d.security = [{ bearer: [] }]
    // listRegions (the first operation) states no security of its own: it inherits the document's.
    t.equal(d.paths['/v1/regions'].get.security, undefined)
  }), /operation listRegions declares x-cache but also security/)
})

t.test('cache policy › start-up › optional authentication (an empty requirement beside bearer) counts as security', async (t) => {
  await t.rejects(appWithSpec(t, (d) => { d.paths['/v1/apps'].get.security = [{}, { bearer: [] }] }), /operation listApps declares x-cache but also security/)
})

t.test('cache policy › start-up › private: true on an operation with security starts', async (t) => {
  await t.resolves(appWithSpec(t, (d) => { getMe(d)['x-cache'] = { maxAge: 30, private: true } }))
})

// --- private: true ------------------------------------------------------------------------------------

async function privateMe (t: SpecTest) {
  // A large origin TTL: were a private answer kept at the origin, the second user would get the first one's.
  return appWithSpec(t, (d) => {
    getMe(d)['x-cache'] = { maxAge: 30, sMaxAge: 300, staleWhileRevalidate: 60, tags: ['users', 'user:{id}'], private: true }
  }, { ORIGIN_CACHE_TTL_MS: '60000' })
}

t.test('cache policy › private › Cache-Control private with max-age only, Vary has Authorization, nothing for a shared cache', async (t) => {
  const app = await privateMe(t)
  const ann = await given(app).signedIn({ name: 'Ann' })
  const res = await app.inject({ method: 'GET', url: '/v1/users/me', headers: ann.headers })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, max-age=30', 'no public, s-maxage or stale-* a shared cache would act on')
  t.ok(String(res.headers.vary).split(',').map((v) => v.trim().toLowerCase()).includes('authorization'), `Vary names Authorization (${res.headers.vary})`)
  for (const name of ['surrogate-key', 'xkey', 'cdn-cache-control', 'surrogate-control']) t.notOk(res.headers[name], `no ${name}`)
  t.match(res.headers.etag, /^"[^"]+"$/, 'a strong ETag for the client to revalidate')
  const again = await app.inject({ method: 'GET', url: '/v1/users/me', headers: { ...ann.headers, 'if-none-match': res.headers.etag as string } })
  t.equal(again.statusCode, 304, 'the client may revalidate its private copy')
  t.equal(again.headers['cache-control'], 'private, max-age=30')
})

t.test('cache policy › private › the answer is not kept at the origin: two users get their own, a change shows at once', async (t) => {
  const app = await privateMe(t)
  const ann = await given(app).signedIn({ name: 'Ann' })
  const bob = await given(app).signedIn({ name: 'Bob' })
  const first = await app.inject({ method: 'GET', url: '/v1/users/me', headers: ann.headers })
  const second = await app.inject({ method: 'GET', url: '/v1/users/me', headers: bob.headers })
  t.equal(first.json().name, 'Ann')
  t.equal(second.json().name, 'Bob', 'Bob is not served Ann')
  t.equal(second.json().id, bob.account.id)
  t.not(second.headers.etag, first.headers.etag)

  // Concurrent reads by different users are not coalesced into one answer either.
  const both = await Promise.all([ann, bob, ann, bob].map((u) => app.inject({ method: 'GET', url: '/v1/users/me', headers: u.headers })))
  t.same(both.map((r) => r.json().name), ['Ann', 'Bob', 'Ann', 'Bob'])

  const renamed = await app.inject({ method: 'PATCH', url: '/v1/users/me', headers: ann.headers, payload: { name: 'Annie' } })
  t.equal(renamed.statusCode, 200)
  const after = await app.inject({ method: 'GET', url: '/v1/users/me', headers: ann.headers })
  t.equal(after.json().name, 'Annie', 'no copy kept at the origin')
})

t.test('cache policy › private › an error answer of a private operation is not made cacheable by a shared cache', async (t) => {
  const app = await privateMe(t)
  const noToken = await app.inject({ method: 'GET', url: '/v1/users/me' })
  t.equal(noToken.statusCode, 401)
  t.notMatch(String(noToken.headers['cache-control']), /public|s-maxage/, `401: ${noToken.headers['cache-control']}`)
  const badToken = await app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer('not.a.jwt') })
  t.equal(badToken.statusCode, 401)
  t.notMatch(String(badToken.headers['cache-control']), /public|s-maxage/, `401 bad token: ${badToken.headers['cache-control']}`)
  const noScope = await app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(await given(app).token({ scopes: [] })) })
  t.equal(noScope.statusCode, 403)
  t.notMatch(String(noScope.headers['cache-control']), /public|s-maxage/, `403: ${noScope.headers['cache-control']}`)
})

// --- public -------------------------------------------------------------------------------------------

t.test('cache policy › public › Cache-Control from x-cache; Surrogate-Control equals CDN-Cache-Control (max-age=sMaxAge)', async (t) => {
  const app = await fileApp()
  await given(app).region()
  const cases: Array<[string, string, string]> = [
    ['/v1/regions', 'public, max-age=60, s-maxage=300, stale-while-revalidate=60, stale-if-error=86400', 'max-age=300, stale-while-revalidate=60, stale-if-error=86400'],
    ['/v1/apps', 'public, max-age=60, s-maxage=300, stale-while-revalidate=60, stale-if-error=86400', 'max-age=300, stale-while-revalidate=60, stale-if-error=86400'],
    ['/v1/status', 'public, max-age=10, s-maxage=10, stale-while-revalidate=5, stale-if-error=300', 'max-age=10, stale-while-revalidate=5, stale-if-error=300']
  ]
  for (const [url, cacheControl, cdn] of cases) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, url)
    t.equal(res.headers['cache-control'], cacheControl, `${url} Cache-Control`)
    t.equal(res.headers['cdn-cache-control'], cdn, `${url} CDN-Cache-Control`)
    t.equal(res.headers['surrogate-control'], res.headers['cdn-cache-control'], `${url} Surrogate-Control equals CDN-Cache-Control`)
    t.equal(res.headers.vary, 'Accept-Encoding', `${url} Vary does not split a public read per user`)
  }
})

t.test('cache policy › public › surrogate-key and xkey carry the tags, templated ones filled from the body', async (t) => {
  const app = await fileApp()
  await given(app).region()
  const chrome = await given(app).app()
  const cases: Array<[string, string]> = [
    ['/v1/regions', 'regions'],
    ['/v1/apps', 'apps'],
    [`/v1/apps/${chrome.id}`, `apps app:${chrome.id}`],
    ['/v1/status', 'status']
  ]
  for (const [url, tags] of cases) {
    const res = await app.inject({ method: 'GET', url })
    t.equal(res.statusCode, 200, url)
    t.equal(res.headers['surrogate-key'], tags, `${url} Surrogate-Key`)
    t.equal(res.headers.xkey, tags, `${url} xkey`)
  }
})

t.test('cache policy › public › the purge tags an admin uses are the ones the answers carry', async (t) => {
  const app = await build(t, { ORIGIN_CACHE_TTL_MS: '60000' })
  const row = await given(app).app({ name: 'Old name' })
  const before = await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })
  const keys = String(before.headers['surrogate-key']).split(' ')
  await app.db.updateTable('app').set({ name: 'New name' }).where('id', '=', row.id).execute()
  t.equal((await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })).json().name, 'Old name', 'kept at the origin')
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await app.inject({ method: 'POST', url: '/v1/admin/cache/purge', headers: admin.headers, payload: { tags: [keys.at(-1)] } })
  t.equal(res.statusCode, 202)
  t.equal((await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })).json().name, 'New name', `purging ${keys.at(-1)} dropped it`)
})

t.test('cache policy › public › an authenticated operation without x-cache is private, no-store', async (t) => {
  const app = await fileApp()
  const ann = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: '/v1/users/me', headers: ann.headers })
  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  for (const name of ['surrogate-key', 'xkey', 'cdn-cache-control', 'surrogate-control', 'etag']) t.notOk(res.headers[name], `no ${name}`)
})

t.test('cache policy › public › with CACHE_PURGER=cloudflare the tags also go out as Cache-Tag (what Cloudflare purges by)', async (t) => {
  const app = await build(t, { CACHE_PURGER: 'cloudflare', CLOUDFLARE_API_URL: 'http://127.0.0.1:9', CLOUDFLARE_API_TOKEN: 'cf-token', CLOUDFLARE_ZONE_ID: 'zone' })
  const row = await given(app).app()
  const res = await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })
  t.equal(res.statusCode, 200)
  t.same(String(res.headers['cache-tag'] ?? '').split(',').map((tag) => tag.trim()).filter(Boolean), ['apps', `app:${row.id}`])
})
