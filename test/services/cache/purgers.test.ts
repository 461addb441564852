// The edge purgers (services/cache/cache.purger.ts) against a local HTTP stand-in for Fastly's and
// Cloudflare's APIs and for Varnish: the exact requests they send, and that every failure rejects (the
// cache-purge job retries on a rejection; a purge that "succeeds" on a failure leaves stale pages at the edge).
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { createPurger, type PurgerConfig } from '../../../services/cache/cache.purger.js'

type Test = { teardown (fn: () => unknown): void }

interface Recorded { method: string, url: string, headers: IncomingHttpHeaders, body: string }
/** What the stand-in answers: a status and a body, or `hang` (never answers). */
type Answer = { status: number, body?: string } | 'hang'

/** A local HTTP server that records every request and answers what `answer` says. */
async function standIn (t: Test, answer: (request: Recorded, n: number) => Answer = () => ({ status: 200, body: '{"status":"ok"}' })) {
  const requests: Recorded[] = []
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const recorded = { method: req.method!, url: req.url!, headers: req.headers, body: Buffer.concat(chunks).toString() }
      requests.push(recorded)
      const a = answer(recorded, requests.length)
      if (a === 'hang') return
      res.writeHead(a.status, { 'content-type': 'application/json' }).end(a.body ?? '')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests }
}

/** A port nothing listens on (bound, then released). */
async function closedPort (): Promise<string> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return `http://127.0.0.1:${port}`
}

const log = { info: () => {} }

function config (fields: Partial<PurgerConfig> & Pick<PurgerConfig, 'kind'>): PurgerConfig {
  return {
    varnishUrls: [],
    fastly: { apiUrl: 'http://127.0.0.1:1', token: null, serviceId: null },
    cloudflare: { apiUrl: 'http://127.0.0.1:1', token: null, zoneId: null },
    timeoutMs: 2000,
    ...fields
  }
}

const fastlyAt = (apiUrl: string, timeoutMs = 2000) => createPurger(config({ kind: 'fastly', fastly: { apiUrl, token: 'fastly-token-1', serviceId: 'SVC123' }, timeoutMs }), log)
const cloudflareAt = (apiUrl: string, timeoutMs = 2000) => createPurger(config({ kind: 'cloudflare', cloudflare: { apiUrl, token: 'cf-token-1', zoneId: 'zone42' }, timeoutMs }), log)
const varnishAt = (urls: string[], timeoutMs = 2000) => createPurger(config({ kind: 'varnish', varnishUrls: urls, timeoutMs }), log)

const tagList = (n: number) => Array.from({ length: n }, (_, i) => `app:a${i}`)

// --- Fastly -------------------------------------------------------------------------------------------

t.test('fastly purger › valid › POST /service/{id}/purge with fastly-key and the surrogate keys as JSON', async (t) => {
  const fastly = await standIn(t)
  const purger = fastlyAt(fastly.url)
  t.equal(purger.kind, 'fastly')
  await purger.purge(['apps', 'app:chrome'])
  t.equal(fastly.requests.length, 1)
  const [req] = fastly.requests
  t.equal(req!.method, 'POST')
  t.equal(req!.url, '/service/SVC123/purge')
  t.equal(req!.headers['fastly-key'], 'fastly-token-1')
  t.match(req!.headers['content-type'], /^application\/json/)
  t.notOk(req!.headers.authorization, 'Fastly reads fastly-key, not Authorization')
  t.same(JSON.parse(req!.body), { surrogate_keys: ['apps', 'app:chrome'] })
})

t.test('fastly purger › valid › an API URL with a trailing slash or a path keeps the path and adds one slash', async (t) => {
  const fastly = await standIn(t)
  await fastlyAt(`${fastly.url}/api/`).purge(['apps'])
  t.equal(fastly.requests[0]!.url, '/api/service/SVC123/purge')
})

t.test('fastly purger › valid › 300 tags go in two requests of 256 and 44, every tag once, in order', async (t) => {
  const fastly = await standIn(t)
  const tags = tagList(300)
  await fastlyAt(fastly.url).purge(tags)
  t.equal(fastly.requests.length, 2)
  const batches = fastly.requests.map((r) => (JSON.parse(r.body) as { surrogate_keys: string[] }).surrogate_keys)
  t.same(batches.map((b) => b.length), [256, 44])
  t.same(batches.flat(), tags)
  t.ok(fastly.requests.every((r) => r.url === '/service/SVC123/purge' && r.headers['fastly-key'] === 'fastly-token-1'))
})

t.test('fastly purger › valid › exactly 256 tags is one request', async (t) => {
  const fastly = await standIn(t)
  await fastlyAt(fastly.url).purge(tagList(256))
  t.equal(fastly.requests.length, 1)
})

t.test('fastly purger › valid › purgeAll is POST /service/{id}/purge_all with fastly-key', async (t) => {
  const fastly = await standIn(t)
  await fastlyAt(fastly.url).purgeAll()
  t.equal(fastly.requests.length, 1)
  t.equal(fastly.requests[0]!.method, 'POST')
  t.equal(fastly.requests[0]!.url, '/service/SVC123/purge_all')
  t.equal(fastly.requests[0]!.headers['fastly-key'], 'fastly-token-1')
})

t.test('fastly purger › valid › a service id is escaped in the path', async (t) => {
  const fastly = await standIn(t)
  await createPurger(config({ kind: 'fastly', fastly: { apiUrl: fastly.url, token: 'k', serviceId: 'a/b c' } }), log).purge(['apps'])
  t.equal(fastly.requests[0]!.url, '/service/a%2Fb%20c/purge')
})

t.test('fastly purger › invalid input › without a token or a service id it refuses to be created', async (t) => {
  t.throws(() => createPurger(config({ kind: 'fastly', fastly: { apiUrl: 'http://x.test', token: null, serviceId: 'SVC' } }), log), /CACHE_PURGER=fastly needs FASTLY_API_TOKEN and FASTLY_SERVICE_ID/)
  t.throws(() => createPurger(config({ kind: 'fastly', fastly: { apiUrl: 'http://x.test', token: 'k', serviceId: null } }), log), /FASTLY_SERVICE_ID/)
})

// --- Cloudflare ---------------------------------------------------------------------------------------

const cloudflareOk = () => ({ status: 200, body: '{"success":true,"errors":[],"messages":[],"result":{"id":"zone42"}}' })

t.test('cloudflare purger › valid › POST /zones/{zone}/purge_cache with a bearer token and {tags}', async (t) => {
  const cf = await standIn(t, cloudflareOk)
  const purger = cloudflareAt(cf.url)
  t.equal(purger.kind, 'cloudflare')
  await purger.purge(['apps', 'app:chrome'])
  t.equal(cf.requests.length, 1)
  const [req] = cf.requests
  t.equal(req!.method, 'POST')
  t.equal(req!.url, '/zones/zone42/purge_cache')
  t.equal(req!.headers.authorization, 'Bearer cf-token-1')
  t.match(req!.headers['content-type'], /^application\/json/)
  t.same(JSON.parse(req!.body), { tags: ['apps', 'app:chrome'] })
})

t.test('cloudflare purger › valid › tags go in batches of 30 (65 tags: 30, 30, 5), every tag once, in order', async (t) => {
  const cf = await standIn(t, cloudflareOk)
  const tags = tagList(65)
  await cloudflareAt(`${cf.url}/client/v4/`).purge(tags)
  t.equal(cf.requests.length, 3)
  t.ok(cf.requests.every((r) => r.url === '/client/v4/zones/zone42/purge_cache'), 'the API path is kept, one slash')
  const batches = cf.requests.map((r) => (JSON.parse(r.body) as { tags: string[] }).tags)
  t.same(batches.map((b) => b.length), [30, 30, 5])
  t.same(batches.flat(), tags)
})

t.test('cloudflare purger › valid › purgeAll sends {purge_everything: true}', async (t) => {
  const cf = await standIn(t, cloudflareOk)
  await cloudflareAt(cf.url).purgeAll()
  t.equal(cf.requests.length, 1)
  t.equal(cf.requests[0]!.url, '/zones/zone42/purge_cache')
  t.equal(cf.requests[0]!.headers.authorization, 'Bearer cf-token-1')
  t.same(JSON.parse(cf.requests[0]!.body), { purge_everything: true })
})

t.test('cloudflare purger › faults › a 200 with {"success":false} rejects', async (t) => {
  const cf = await standIn(t, () => ({ status: 200, body: '{"success":false,"errors":[{"code":1134,"message":"Purge by tag is not available"}],"messages":[],"result":null}' }))
  await t.rejects(cloudflareAt(cf.url).purge(['apps']), /cloudflare purge: .* refused: .*1134/)
  await t.rejects(cloudflareAt(cf.url).purgeAll(), /refused/)
})

t.test('cloudflare purger › invalid input › without a token or a zone it refuses to be created', async (t) => {
  t.throws(() => createPurger(config({ kind: 'cloudflare', cloudflare: { apiUrl: 'http://x.test', token: null, zoneId: 'z' } }), log), /CACHE_PURGER=cloudflare needs CLOUDFLARE_API_TOKEN and CLOUDFLARE_ZONE_ID/)
  t.throws(() => createPurger(config({ kind: 'cloudflare', cloudflare: { apiUrl: 'http://x.test', token: 't', zoneId: null } }), log), /CLOUDFLARE_ZONE_ID/)
})

// --- Varnish ------------------------------------------------------------------------------------------

t.test('varnish purger › valid › PURGE / with the tags in xkey-purge, sent to every configured host', async (t) => {
  const one = await standIn(t)
  const two = await standIn(t)
  const purger = varnishAt([one.url, `${two.url}/`])
  t.equal(purger.kind, 'varnish')
  await purger.purge(['apps', 'app:chrome'])
  for (const [name, host] of [['first', one], ['second', two]] as const) {
    t.equal(host.requests.length, 1, `${name} host purged once`)
    t.equal(host.requests[0]!.method, 'PURGE')
    t.equal(host.requests[0]!.url, '/')
    t.equal(host.requests[0]!.headers['xkey-purge'], 'apps app:chrome')
    t.notOk(host.requests[0]!.headers['x-purge-all'])
  }
})

t.test('varnish purger › valid › purgeAll is PURGE / with x-purge-all: 1 to every host', async (t) => {
  const one = await standIn(t)
  const two = await standIn(t)
  await varnishAt([one.url, two.url]).purgeAll()
  for (const host of [one, two]) {
    t.equal(host.requests.length, 1)
    t.equal(host.requests[0]!.method, 'PURGE')
    t.equal(host.requests[0]!.url, '/')
    t.equal(host.requests[0]!.headers['x-purge-all'], '1')
    t.notOk(host.requests[0]!.headers['xkey-purge'])
  }
})

t.test('varnish purger › valid › many tags are split so one header stays small (300 tags: 200 + 100)', async (t) => {
  const host = await standIn(t)
  const tags = tagList(300)
  await varnishAt([host.url]).purge(tags)
  t.same(host.requests.map((r) => String(r.headers['xkey-purge']).split(' ').length), [200, 100])
  t.same(host.requests.flatMap((r) => String(r.headers['xkey-purge']).split(' ')), tags)
})

t.test('varnish purger › faults › one host of two failing rejects (the other was still purged)', async (t) => {
  const good = await standIn(t)
  const bad = await standIn(t, () => ({ status: 503, body: 'backend fetch failed' }))
  await t.rejects(varnishAt([good.url, bad.url]).purge(['apps']), /varnish purge: .* answered 503/)
  t.equal(good.requests.length, 1)
})

t.test('varnish purger › invalid input › without purge URLs it refuses to be created', async (t) => {
  t.throws(() => varnishAt([]), /CACHE_PURGER=varnish needs VARNISH_PURGE_URLS/)
})

// --- Failures, every purger ---------------------------------------------------------------------------

const kinds = {
  fastly: (url: string, timeoutMs?: number) => fastlyAt(url, timeoutMs),
  cloudflare: (url: string, timeoutMs?: number) => cloudflareAt(url, timeoutMs),
  varnish: (url: string, timeoutMs?: number) => varnishAt([url], timeoutMs)
}

for (const [kind, make] of Object.entries(kinds)) {
  t.test(`${kind} purger › faults › a 500 rejects, for tags and for everything (the purge job retries)`, async (t) => {
    const api = await standIn(t, () => ({ status: 500, body: '{"msg":"internal"}' }))
    await t.rejects(make(api.url).purge(['apps']), new RegExp(`${kind} purge: .* answered 500`))
    await t.rejects(make(api.url).purgeAll(), /answered 500/)
  })

  t.test(`${kind} purger › faults › a 403 (bad token) rejects`, async (t) => {
    const api = await standIn(t, () => ({ status: 403, body: '{"msg":"Provided credentials are invalid"}' }))
    await t.rejects(make(api.url).purge(['apps']), /answered 403/)
    await t.rejects(make(api.url).purgeAll(), /answered 403/)
  })

  t.test(`${kind} purger › faults › an unreachable host rejects`, async (t) => {
    const url = await closedPort()
    await t.rejects(make(url).purge(['apps']), new RegExp(`${kind} purge: .* unreachable`))
    await t.rejects(make(url).purgeAll(), /unreachable/)
  })

  t.test(`${kind} purger › faults › a host that never answers rejects after the timeout`, async (t) => {
    const api = await standIn(t, () => 'hang')
    const purger = make(api.url, 200)
    await t.rejects(purger.purge(['apps']), /unreachable .*(timeout|aborted)/i)
    await t.rejects(purger.purgeAll(), /unreachable/)
    t.equal(api.requests.length, 2, 'the requests did reach the host')
  })

  t.test(`${kind} purger › faults › a failing batch rejects and the batches after it are not sent`, async (t) => {
    const api = await standIn(t, (_r, n) => (n === 1 ? { status: 500 } : { status: 200, body: '{"success":true}' }))
    await t.rejects(make(api.url).purge(tagList(301)), /answered 500/)
    t.equal(api.requests.length, 1)
  })
}

// --- None ---------------------------------------------------------------------------------------------

t.test('none purger › valid › logs the tags and sends nothing', async (t) => {
  const lines: Array<{ obj: object, msg: string }> = []
  const purger = createPurger(config({ kind: 'none' }), { info: (obj, msg) => { lines.push({ obj, msg }) } })
  t.equal(purger.kind, 'none')
  await purger.purge(['apps'])
  await purger.purgeAll()
  t.same(lines, [
    { obj: { tags: ['apps'] }, msg: 'cache purge (no purger configured)' },
    { obj: {}, msg: 'cache purge of everything (no purger configured)' }
  ])
})
