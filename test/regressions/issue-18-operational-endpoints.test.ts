// Issue 18, item 11: GET /metrics was public (429 KB naming every admin route) and GET /readyz named the database
// and Redis and their states to anyone. Metrics now need the scrape token (METRICS_TOKEN) on the API port, or
// are served on their own port (METRICS_PORT); readiness details are for operators only.
import t from 'tap'
import type { FastifyInstance, LightMyRequestResponse } from 'fastify'
import { buildApp } from '../../app.js'
import { build, testConfig } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'
import { entryEnv, runEntry } from '../helpers/processes.js'
import { freePort } from '../helpers/redis-server.js'
import { until } from '../helpers/wait.js'
import { isProblem, operations } from '../security/spec-walk.js'

const metricsToken = 'issue-18-scrape-token-0123456789abcdef'
const scrapeHeaders = bearer(metricsToken)
// What an operational endpoint must not tell an anonymous caller: dependencies and their states, the metrics
// exposition and the routes it has seen (its `route` label).
const details = /database|redis|postgres|pglite|# HELP|# TYPE|http_requests_total|route="|process_/i

/** Operational endpoints: the spec's `system` operations, and the queue dashboard outside it. */
const operational = [...operations.filter((op) => op.tag === 'system').map((op) => op.path), '/admin/queues', '/admin/queues/api/queues']

async function anonymousLeaks (app: FastifyInstance): Promise<string[]> {
  const leaks: string[] = []
  for (const url of operational) {
    for (const headers of [{}, { authorization: 'Bearer garbage' }, { authorization: `Bearer ${metricsToken.slice(0, -1)}` }, { 'x-api-key': metricsToken }]) {
      const res = await app.inject({ method: 'GET', url, headers })
      const what = `${url} with ${JSON.stringify(headers)}: ${res.statusCode}`
      if (details.test(res.body)) leaks.push(`${what} tells ${details.exec(res.body)![0]}`)
      if (res.statusCode >= 400 && url !== '/admin/queues' && url !== '/admin/queues/api/queues' && !isProblem(res)) leaks.push(`${what} is not a problem`)
    }
  }
  return leaks
}

t.test('operational endpoints › no operational endpoint tells an anonymous caller anything about the deployment', async (t) => {
  t.ok(operational.includes('/metrics') && operational.includes('/readyz'), 'metrics and readiness are walked')
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  await app.inject({ method: 'GET', url: '/v1/admin/users' })
  t.same(await anonymousLeaks(app), [], 'healthy: nothing')

  // Nothing listens on port 1: the database is away, readiness fails.
  const down = await build(t, { METRICS_TOKEN: metricsToken, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' })
  t.same(await anonymousLeaks(down), [], 'with the database away: nothing either')

  // The operators do see it (the markers above are what they get).
  const metrics = await app.inject({ method: 'GET', url: '/metrics', headers: scrapeHeaders })
  t.match(metrics.body, details, 'the scrape token gets the metrics')
  const ready = await down.inject({ method: 'GET', url: '/readyz', headers: scrapeHeaders })
  t.match(ready.json().detail, /database/, 'and the readiness details')
})

t.test('getMetrics › insufficient permissions › 401 without the scrape token, with a wrong one, or with an access token, even an admin\'s', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  const admin = await given(app).signedIn({ role: 'admin' })
  const refused: Array<[string, Record<string, string>]> = [
    ['no credentials', {}],
    ['a wrong token', bearer('x'.repeat(40))],
    ['the token with a character less', bearer(metricsToken.slice(0, -1))],
    ['the token with a character more', bearer(`${metricsToken}x`)],
    ['the token without "Bearer"', { authorization: metricsToken }],
    ['the token as Basic', { authorization: `Basic ${Buffer.from(`scraper:${metricsToken}`).toString('base64')}` }],
    ['the token in X-Api-Key', { 'x-api-key': metricsToken }],
    ['the token in the query', {}],
    ['an admin\'s access token', admin.headers]
  ]
  for (const [what, headers] of refused) {
    const url = what === 'the token in the query' ? `/metrics?token=${metricsToken}` : '/metrics'
    const res = await app.inject({ method: 'GET', url, headers })
    t.equal(res.statusCode, 401, `${what}: 401`)
    t.ok(isProblem(res) && res.json().code === 'unauthorized', `${what}: an unauthorized problem`)
    t.notMatch(res.body, details, `${what}: no metrics`)
  }
  const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `bearer   ${metricsToken}` } })
  t.equal(res.statusCode, 200, 'the scheme is case-insensitive, as RFC 9110 says')
  t.match(res.headers['cache-control'], /no-store/)
})

t.test('getMetrics › insufficient permissions › without METRICS_TOKEN the API port serves metrics to no one, in every environment', async (t) => {
  for (const env of ['test', 'production']) {
    const app = await buildApp(await testConfig(t, { NODE_ENV: env, CLOUD_PROVIDER: 'simulated' }), { logger: false })
    t.teardown(() => app.close())
    const admin = await given(app).signedIn({ role: 'admin' })
    for (const headers of [{}, bearer(''), admin.headers, bearer('undefined'), bearer('null')]) {
      const res = await app.inject({ method: 'GET', url: '/metrics', headers })
      t.equal(res.statusCode, 401, `${env}, ${JSON.stringify(headers).slice(0, 40)}: 401`)
    }
  }
})

t.test('getMetrics › valid › concurrent scrapes with the right and wrong tokens each get their own answer', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  const requests = Array.from({ length: 40 }, (_, i) => i % 2 === 0 ? scrapeHeaders : bearer(`${metricsToken.slice(0, -2)}${String(i).padStart(2, '0')}`))
  const answers = await Promise.all(requests.map((headers) => app.inject({ method: 'GET', url: '/metrics', headers })))
  answers.forEach((res: LightMyRequestResponse, i) => {
    t.equal(res.statusCode, i % 2 === 0 ? 200 : 401, `scrape ${i}`)
  })
})

t.test('getReadiness › valid › anyone learns ready or not; the scrape token and an admin\'s access token get the checks', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).signedIn()
  const full = { status: 'ready', checks: { database: 'ok', redis: 'ok' } }
  const cases: Array<[string, Record<string, string>, unknown]> = [
    ['anyone', {}, { status: 'ready', checks: {} }],
    ['a user\'s access token', user.headers, { status: 'ready', checks: {} }],
    ['a wrong scrape token', bearer(`${metricsToken}x`), { status: 'ready', checks: {} }],
    ['garbage', { authorization: 'Bearer garbage' }, { status: 'ready', checks: {} }],
    ['the scrape token', scrapeHeaders, full],
    ['an admin\'s access token', admin.headers, full]
  ]
  for (const [who, headers, body] of cases) {
    const res = await app.inject({ method: 'GET', url: '/readyz', headers })
    t.equal(res.statusCode, 200, `${who}: 200`)
    t.same(res.json(), body, `${who}: ${JSON.stringify(body)}`)
    t.match(res.headers['cache-control'], /no-store/)
  }
})

t.test('getReadiness › dependency down › 503 for everyone; only operators learn which dependency', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none' })
  const anonymous = await app.inject({ method: 'GET', url: '/readyz' })
  t.equal(anonymous.statusCode, 503)
  t.equal(anonymous.headers['retry-after'], '5')
  t.match(anonymous.json(), { code: 'unavailable', detail: 'Not ready.' })
  const operator = await app.inject({ method: 'GET', url: '/readyz', headers: scrapeHeaders })
  t.equal(operator.statusCode, 503)
  t.match(operator.json(), { code: 'unavailable', detail: 'Not ready: database not reachable.' }, 'the scrape token needs no database to be checked')
})

t.test('server › METRICS_PORT serves the web process\'s metrics on a port of their own, behind METRICS_TOKEN when there is one', async (t) => {
  const config = await testConfig(t)
  const [port, metricsPort] = [await freePort(), await freePort()]
  const { child, waitFor, exited } = runEntry(t, 'server.ts', entryEnv(config, {
    PORT: String(port), METRICS_PORT: String(metricsPort), METRICS_TOKEN: metricsToken
  }))
  t.ok(await waitFor(/metrics served at \/metrics/, 60_000), 'started')
  t.ok(await until(() => fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false), 20_000), 'ready')
  await fetch(`http://127.0.0.1:${port}/v1/regions`)

  const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`
  const scraped = await fetch(metricsUrl, { headers: scrapeHeaders })
  t.equal(scraped.status, 200)
  t.match(await scraped.text(), /http_requests_total\{method="GET",route="\/v1\/regions",status_code="200"\}/, 'the requests of the API port')
  const anonymous = await fetch(metricsUrl)
  t.equal(anonymous.status, 401, 'the token is asked there too')
  t.notMatch(await anonymous.text(), details)
  t.equal((await fetch(`http://127.0.0.1:${metricsPort}/v1/regions`, { headers: scrapeHeaders })).status, 404, 'nothing else is served there')
  t.equal((await fetch(`http://127.0.0.1:${port}/metrics`)).status, 401, 'the API port asks for the token')
  t.same(await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.json()), { status: 'ready', checks: {} }, 'and names no check to anyone')

  child.kill('SIGTERM')
  t.equal(await exited, 0)
  t.equal(await fetch(metricsUrl).then(() => 'answered', () => 'refused'), 'refused', 'the port closes with the server')
})
