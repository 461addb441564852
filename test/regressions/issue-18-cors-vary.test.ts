// Issue 18, item 9: edge-cached public answers replaced `Vary: Origin` with `Vary: Accept-Encoding` while carrying
// one origin's Access-Control-Allow-Origin, so a shared cache served that origin's header to every other one.
// Through real Varnish: test/edge/varnish.test.ts. Here, every public cached operation of the spec, on every path
// of the origin: computed, kept at the origin, coalesced with concurrent requests, 304, and errors.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { operations, urlOf, validRequest } from '../security/spec-walk.js'

const allowed = ['https://app.fractal.co', 'https://admin.fractal.co'] as const
const refused = 'https://evil.example'
const callers = [...allowed, refused, undefined]

const varyOf = (res: LightMyRequestResponse) => String(res.headers.vary ?? '').split(',').map((f) => f.trim().toLowerCase()).filter(Boolean)

/** Every CORS promise an answer must keep, whatever path of the edge cache produced it. */
function corsProblems (res: LightMyRequestResponse, origin: string | undefined, varyFields: readonly string[]): string[] {
  const problems: string[] = []
  const acao = res.headers['access-control-allow-origin']
  const expected = origin !== undefined && (allowed as readonly string[]).includes(origin) ? origin : undefined
  if (acao !== expected) problems.push(`Access-Control-Allow-Origin ${String(acao)}, expected ${String(expected)}`)
  const vary = varyOf(res)
  if (!vary.includes('origin')) problems.push(`Vary is "${String(res.headers.vary)}": no Origin`)
  if (res.statusCode < 400) for (const field of varyFields) if (!vary.includes(field.toLowerCase())) problems.push(`Vary is "${String(res.headers.vary)}": no ${field}`)
  if (!expected) {
    for (const name of ['access-control-allow-credentials', 'access-control-expose-headers', 'access-control-allow-methods']) {
      if (res.headers[name] !== undefined) problems.push(`${name} for an origin that is not allowed`)
    }
  }
  return problems
}

const cached = operations.filter((op) => op.method === 'GET' && op.raw['x-cache'] && !op.raw['x-cache'].private)

t.test('edge cache › CORS › every public cached operation answers each origin with its own Access-Control-Allow-Origin and Vary: Origin, on every path', async (t) => {
  t.ok(cached.length >= 7, `${cached.length} public cached operations`)
  const app = await build(t, { CORS_ORIGINS: allowed.join(','), ORIGIN_CACHE_TTL_MS: '60000', RATE_LIMIT_ENABLED: 'false' })
  const existing = await given(app).app({ id: 'cors-vary' })
  // Path parameters of the cached operations: one value that exists, one that does not. A new parameter
  // must be added here, so that its operation's 200 is walked too.
  const fixtures: Record<string, { exists: string, missing: string }> = { appId: { exists: existing.id, missing: 'cors-vary-none' } }

  const wrong: string[] = []
  const check = (name: string, res: LightMyRequestResponse, origin: string | undefined, varyFields: readonly string[]) => {
    for (const problem of corsProblems(res, origin, varyFields)) wrong.push(`${name} (${res.statusCode}, origin ${origin ?? 'none'}): ${problem}`)
  }
  const get = (app: FastifyInstance, url: string, origin: string | undefined, headers: Record<string, string> = {}) =>
    app.inject({ method: 'GET', url, headers: { ...(origin ? { origin } : {}), ...headers } })

  for (const op of cached) {
    const varyFields: string[] = op.raw['x-cache'].vary ?? ['Accept-Encoding']
    const pathParams = op.params.filter((p) => p.in === 'path').map((p) => p.name)
    for (const name of pathParams) t.ok(fixtures[name], `${op.operationId}: a fixture for {${name}}`)
    const url = urlOf(op, Object.fromEntries(pathParams.map((n) => [n, fixtures[n]?.exists ?? 'x'])))

    // Computed for the first origin, then kept at the origin for the others.
    const first = await get(app, url, allowed[0])
    t.equal(first.statusCode, 200, `${op.operationId}: 200`)
    check(`${op.operationId} computed`, first, allowed[0], varyFields)
    for (const origin of callers) {
      check(`${op.operationId} kept at the origin`, await get(app, url, origin), origin, varyFields)
      const notModified = await get(app, url, origin, { 'if-none-match': String(first.headers.etag) })
      if (notModified.statusCode !== 304) wrong.push(`${op.operationId}: If-None-Match gave ${notModified.statusCode}`)
      check(`${op.operationId} 304`, notModified, origin, varyFields)
    }

    // Coalesced: concurrent requests of every origin share one computation.
    await app.cache.invalidateAll()
    const together = await Promise.all(callers.map((origin) => get(app, url, origin)))
    together.forEach((res, i) => check(`${op.operationId} coalesced`, res, callers[i], varyFields))

    // Errors: a missing resource (a short edge life), and a query the operation refuses.
    if (pathParams.length > 0) {
      const missing = urlOf(op, Object.fromEntries(pathParams.map((n) => [n, fixtures[n]?.missing ?? 'x'])))
      for (const origin of callers) check(`${op.operationId} missing`, await get(app, missing, origin), origin, varyFields)
    }
    if (op.params.some((p) => p.in === 'query' && p.name === 'limit')) {
      for (const origin of callers) check(`${op.operationId} refused query`, await get(app, `${url.split('?')[0]}?limit=-1`, origin), origin, varyFields)
    }
  }

  // The documents served beside the operations (plugins/docs.ts) are edge-cached the same way.
  for (const url of ['/openapi.json', '/openapi.yaml']) {
    const first = await get(app, url, allowed[0])
    for (const origin of callers) {
      check(url, await get(app, url, origin), origin, ['Accept-Encoding'])
      check(`${url} 304`, await get(app, url, origin, { 'if-none-match': String(first.headers.etag) }), origin, ['Accept-Encoding'])
    }
  }
  t.same(wrong, [], 'every answer names its own origin (or none) and varies on Origin')
})

t.test('CORS › every operation that names an origin in Access-Control-Allow-Origin also says Vary: Origin', async (t) => {
  const app = await build(t, { CORS_ORIGINS: allowed.join(','), RATE_LIMIT_ENABLED: 'false' })
  const wrong: string[] = []
  for (const op of operations) {
    const request = validRequest(op)
    for (const origin of callers) {
      const res = await app.inject({ ...request, headers: { ...request.headers, ...(origin ? { origin } : {}) } })
      const acao = res.headers['access-control-allow-origin']
      if (acao !== undefined && acao !== origin) wrong.push(`${op.operationId} (${res.statusCode}): Access-Control-Allow-Origin ${String(acao)} for ${origin ?? 'no Origin'}`)
      if (!varyOf(res).includes('origin')) wrong.push(`${op.operationId} (${res.statusCode}): Vary is "${String(res.headers.vary)}"`)
    }
  }
  t.same(wrong, [], 'every answer of every operation (successes and refusals alike) varies on Origin')
})

t.test('edge cache › CORS › an origin that is not allowed gets no CORS header at all, on answers and preflights', async (t) => {
  const app = await build(t, { CORS_ORIGINS: allowed.join(',') })
  for (const origin of [refused, 'null', `${allowed[0]}.evil.example`]) {
    const read = await app.inject({ method: 'GET', url: '/v1/regions', headers: { origin } })
    t.equal(read.statusCode, 200)
    const preflight = await app.inject({ method: 'OPTIONS', url: '/v1/users/me', headers: { origin, 'access-control-request-method': 'PATCH' } })
    for (const res of [read, preflight]) {
      const cors = Object.keys(res.headers).filter((name) => name.startsWith('access-control-'))
      t.same(cors, [], `${origin}, ${res.statusCode}: no Access-Control-* header`)
    }
    t.equal(preflight.statusCode, 404, `${origin}: its preflight is refused`)
  }
  const preflight = await app.inject({ method: 'OPTIONS', url: '/v1/users/me', headers: { origin: allowed[1], 'access-control-request-method': 'PATCH' } })
  t.equal(preflight.statusCode, 204)
  t.equal(preflight.headers['access-control-allow-origin'], allowed[1])
  t.equal(preflight.headers['access-control-allow-credentials'], 'true')
  t.match(preflight.headers['access-control-allow-methods'], /PATCH/)
})
