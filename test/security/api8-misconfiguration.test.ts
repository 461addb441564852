// OWASP API8 (security misconfiguration): the security headers are on every kind of answer (success, each
// error, the docs with their own CSP), CORS answers the allow-listed origins only — and lets them use every
// method the spec has — no error of any kind shows a stack, a path or an internal message (the 500 of a
// dependency that throws included), TRACE echoes nothing, and nothing says what the server runs.
// (test/plugins/request.test.ts has the headers of one public read and the basic allow-list; errors.test.ts
// the 500 of a route outside the spec.)
import { sql } from '../../db/kysely.js'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { credentialsFor, document, everyCredential, isProblem, operations } from './spec-walk.js'

const allowed = 'https://app.fractal.co'
const app = await build(t, { CORS_ORIGINS: `${allowed}, https://admin.fractal.co`, BODY_LIMIT: '1024' })
const user = await given(app).signedIn()

/** One request of each kind of answer: a success, every kind of refusal, the docs. */
const kinds: Record<string, { method: string, url: string, headers?: Record<string, string>, payload?: string, status: number }> = {
  'public read': { method: 'GET', url: '/v1/regions', status: 200 },
  'signed-in read': { method: 'GET', url: '/v1/users/me', headers: user.headers, status: 200 },
  'unknown route': { method: 'GET', url: '/v1/nothing/here', status: 404 },
  'wrong method': { method: 'DELETE', url: '/v1/regions', status: 404 },
  'no credentials': { method: 'GET', url: '/v1/users/me', status: 401 },
  'missing scope': { method: 'GET', url: '/v1/admin/users', headers: user.headers, status: 403 },
  'schema violation': { method: 'GET', url: '/v1/apps?limit=0', status: 400 },
  'malformed JSON': { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"email":', status: 400 },
  'prototype pollution': { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: '{"__proto__":{"x":1}}', status: 400 },
  'foreign content type': { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'text/xml' }, payload: '<a/>', status: 415 },
  'body too large': { method: 'POST', url: '/v1/sessions', headers: { 'content-type': 'application/json' }, payload: JSON.stringify({ email: 'x'.repeat(2000) }), status: 413 },
  'unknown id': { method: 'GET', url: '/v1/containers/00000000-0000-4000-8000-000000000000', headers: user.headers, status: 404 },
  docs: { method: 'GET', url: '/docs/', status: 200 },
  'the contract': { method: 'GET', url: '/openapi.json', status: 200 }
}

/** What a leaked internal looks like: a stack frame, a source path, a driver's or the runtime's message. */
const internals = /\bat [\w.<>]+ \(|\.(ts|js):\d+|node_modules|node:internal|\/work\/|\/app\/|"stack"|ECONNREFUSED|relation "|syntax error at|kysely|pg-protocol|TypeError|ReferenceError|Cannot read propert/i

t.test('security › misconfiguration › every kind of answer carries the security headers, and none says what runs', async (t) => {
  for (const [kind, request] of Object.entries(kinds)) {
    const res = await app.inject({ method: request.method as 'GET', url: request.url, headers: request.headers, payload: request.payload })
    t.equal(res.statusCode, request.status, `${kind}: ${request.method} ${request.url}`)
    t.equal(res.headers['x-content-type-options'], 'nosniff', `${kind}: nosniff`)
    t.equal(res.headers['x-frame-options'], 'DENY', `${kind}: no framing`)
    t.match(res.headers['strict-transport-security'], /max-age=\d{7,}/, `${kind}: HSTS`)
    t.equal(res.headers['referrer-policy'], 'no-referrer', `${kind}: no referrer`)
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/, `${kind}: a CSP`)
    for (const header of ['x-powered-by', 'server', 'x-aspnet-version', 'x-runtime']) t.notOk(res.headers[header], `${kind}: no ${header}`)
    if (res.statusCode >= 400) {
      t.ok(isProblem(res), `${kind}: problem+json`)
      t.notMatch(res.body, internals, `${kind}: no internals in the body`)
    }
  }
})

// Fastify's own refusals before routing (frameworkErrors) run no hook: plugins/errors.ts's frameworkError
// sets the headers itself.
t.test('security › misconfiguration › Fastify\'s refusals before routing carry the security headers too', async (t) => {
  for (const url of ['/v1/apps/%E0%A4%A', `/v1/apps/${'a'.repeat(300)}`]) {
    const res = await app.inject({ method: 'GET', url })
    t.ok(res.statusCode === 400 || res.statusCode === 414, `${url.slice(0, 30)}: ${res.statusCode}`)
    t.ok(isProblem(res), 'problem+json')
    t.notMatch(res.body, internals)
    t.equal(res.headers['x-content-type-options'], 'nosniff')
    t.match(res.headers['content-security-policy'], /frame-ancestors 'none'/)
    t.equal(res.headers['x-frame-options'], 'DENY')
  }
})

t.test('security › misconfiguration › the docs run under a CSP of their own that loads nothing from elsewhere', async (t) => {
  for (const url of ['/docs/', '/reference']) {
    const csp = (await app.inject({ method: 'GET', url })).headers['content-security-policy'] as string
    const directives = Object.fromEntries(csp.split(';').map((d) => d.trim().split(/\s+/)).map(([name, ...values]) => [name, values]))
    t.ok(directives['default-src'], `${url}: default-src`)
    for (const [name, values] of Object.entries<string[]>(directives)) {
      t.notOk(values.some((v) => /^https?:|^\*$|'unsafe-eval'/.test(v)), `${url}: ${name} ${values.join(' ')} names no other origin and no eval`)
    }
    t.same(directives['script-src'], ["'self'"], `${url}: scripts from here only`)
    t.same(directives['frame-ancestors'], ["'none'"], `${url}: never framed`)
    t.same(directives['object-src'], ["'none'"])
  }
})

t.test('security › CORS › the allow-listed origins only, on answers and preflights, with every method the spec uses', async (t) => {
  const lookalikes = ['https://evil.example', 'null', 'http://app.fractal.co', 'https://app.fractal.co.evil.example', 'https://evil-app.fractal.co', 'https://APP.fractal.co.', `${allowed}:8443`]
  for (const origin of lookalikes) {
    const read = await app.inject({ method: 'GET', url: '/v1/users/me', headers: { ...user.headers, origin } })
    t.notOk(read.headers['access-control-allow-origin'], `${origin}: no Access-Control-Allow-Origin on an answer`)
    const preflight = await app.inject({ method: 'OPTIONS', url: '/v1/users/me', headers: { origin, 'access-control-request-method': 'PATCH', 'access-control-request-headers': 'authorization, content-type' } })
    t.notOk(preflight.headers['access-control-allow-origin'], `${origin}: none on a preflight`)
  }

  const read = await app.inject({ method: 'GET', url: '/v1/users/me', headers: { ...user.headers, origin: allowed } })
  t.equal(read.headers['access-control-allow-origin'], allowed, 'a listed origin reads its answer')
  t.match(read.headers.vary, /Origin/, 'Vary: Origin, so no cache serves one origin\'s answer to another')
  t.not(read.headers['access-control-allow-origin'], '*')
  const refused = await app.inject({ method: 'GET', url: '/v1/users/me', headers: { origin: allowed } })
  t.equal(refused.headers['access-control-allow-origin'], allowed, 'and can read a refusal (401 problem) too')

  // Every path, preflighted for each of its methods by the web app: the browser must be let through.
  const wrong: string[] = []
  for (const [path, item] of Object.entries<Record<string, unknown>>(document.paths)) {
    const url = path.replace(/\{\w+\}/g, '00000000-0000-4000-8000-000000000000')
    for (const method of ['get', 'put', 'post', 'patch', 'delete'].filter((m) => item[m])) {
      const res = await app.inject({ method: 'OPTIONS', url, headers: { origin: allowed, 'access-control-request-method': method.toUpperCase(), 'access-control-request-headers': 'authorization, content-type, idempotency-key' } })
      const methods = String(res.headers['access-control-allow-methods'] ?? '').split(/\s*,\s*/)
      const headers = String(res.headers['access-control-allow-headers'] ?? '').toLowerCase()
      if (res.statusCode !== 204 || res.headers['access-control-allow-origin'] !== allowed || !methods.includes(method.toUpperCase()) || !headers.includes('authorization')) {
        wrong.push(`${method.toUpperCase()} ${path}: ${res.statusCode} allow-methods=${methods.join(',')} allow-headers=${headers}`)
      }
    }
  }
  t.same(wrong, [], 'every method of every path passes its preflight from the web app')
})

t.test('security › misconfiguration › TRACE and other methods the API does not have echo nothing', async (t) => {
  for (const method of ['TRACE', 'CONNECT', 'PROPFIND', 'TRACK']) {
    let res
    try {
      res = await app.inject({ method: method as 'GET', url: '/v1/users/me', headers: { ...user.headers, 'x-echo-me': 'reflected-secret' } })
    } catch {
      t.pass(`${method}: refused before routing`)
      continue
    }
    t.ok([404, 405, 400].includes(res.statusCode), `${method}: ${res.statusCode}`)
    t.notOk(res.body.includes('reflected-secret') || res.body.includes(user.accessToken), `${method}: the request is not echoed`)
    t.notMatch(String(res.headers['content-type']), /message\/http/, `${method}: not a TRACE echo`)
  }
})

t.test('security › misconfiguration › a dependency failing inside an operation is a 500 with a fixed detail and nothing of the failure', async (t) => {
  // The sessions table goes away under listMySessions: PostgreSQL says `relation "session" does not exist`.
  await sql`alter table session rename to session_gone`.execute(app.db)
  t.teardown(() => sql`alter table session_gone rename to session`.execute(app.db))
  const res = await app.inject({ method: 'GET', url: '/v1/users/me/sessions', headers: { ...user.headers, 'x-request-id': 'api8-internal-1' } })
  t.equal(res.statusCode, 500)
  t.ok(isProblem(res))
  t.same(res.json(), {
    type: 'https://docs.fractal.co/problems/internal',
    title: 'Internal server error',
    status: 500,
    code: 'internal',
    detail: 'Something went wrong on our side. The request id identifies it in our logs.',
    instance: '/v1/users/me/sessions',
    requestId: 'api8-internal-1'
  }, 'the fixed detail and the request id, nothing more')
  t.notMatch(res.body, internals)
  t.notMatch(res.body, /session_gone|42P01/)
  t.notOk(res.headers['x-powered-by'])
})

t.test('security › misconfiguration › every operation\'s documented errors are problems (no framework default bodies)', async (t) => {
  // Framework refusals on the way in (before any handler): problem+json with a status and a code, never Fastify's {error,message,statusCode}.
  const wrong: string[] = []
  const { held, values } = await everyCredential(app)
  for (const op of operations.filter((o) => o.body)) {
    const url = op.path.replace(/\{(\w+)\}/g, (_, name: keyof typeof values) => values[name] ?? '00000000-0000-4000-8000-000000000000')
    const res = await app.inject({ method: op.method as 'POST', url, headers: { 'content-type': 'application/json', ...credentialsFor(op, held) }, payload: '{"unterminated' })
    if (res.statusCode !== 400 && res.statusCode !== 415) wrong.push(`${op.operationId}: ${res.statusCode}`)
    else if (!isProblem(res) || 'error' in res.json() || internals.test(res.body)) wrong.push(`${op.operationId}: ${res.body.slice(0, 120)}`)
  }
  t.same(wrong, [], 'malformed JSON on every operation with a body: a 400 (or 415) problem with nothing of the parser\'s internals')
})
