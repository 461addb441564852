import { createPublicKey, verify } from 'node:crypto'
import t from 'tap'
import { Kysely, PostgresDialect } from '../../../db/kysely.js'
import pg from 'pg'
import { buildApp } from '../../../app.js'
import { createMigrator, migrateToLatest } from '../../../db/migrator.js'
import { build, fileApp, testConfig } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

// The scrape token (METRICS_TOKEN): /metrics, and the details of /readyz (test/regressions/issue-18-operational-endpoints.test.ts).
const metricsToken = 'system-test-scrape-token-0123456789'

t.test('getHealth › valid › answers ok and is never cached', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/healthz' })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ok' })
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('getReadiness › valid › reports the database and Redis as ok to an operator', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  const res = await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { status: 'ready', checks: { database: 'ok', redis: 'ok' } })
  t.same((await app.inject({ method: 'GET', url: '/readyz' })).json(), { status: 'ready', checks: {} }, 'and only that it is ready to anyone else')
})

t.test('getReadiness › dependency down › 503 problem with Retry-After naming the database', async (t) => {
  // Nothing listens on port 1: the pool fails to connect, as when PostgreSQL is restarting.
  const app = await build(t, { DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', METRICS_TOKEN: metricsToken })
  const res = await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })
  t.equal(res.statusCode, 503)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(res.json(), { code: 'unavailable', detail: 'Not ready: database not reachable.' })
  t.equal(res.headers['retry-after'], '5')

  const read = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(read.statusCode, 503, 'a read needing the database is a 503, not a 500')
  t.equal(read.json().code, 'unavailable')
  t.equal(read.headers['cache-control'], 'no-store')
})

// Issue 19: /readyz answered ready while the database lacked a migration (and /v1/regions answered 500).
t.test('getReadiness › dependency down › 503 while a migration is pending, ready once it is applied, and not asked again after', async (t) => {
  const config = await testConfig(t, { METRICS_TOKEN: metricsToken })
  // The database one release behind: its last migration undone, as before `npm run db:migrate`.
  const behind = new Kysely<any>({ dialect: new PostgresDialect({ pool: new pg.Pool({ connectionString: config.db.url!, max: 1 }) }) })
  const { results } = await createMigrator(behind).migrateDown()
  await behind.destroy()
  const last = results![0]!.migrationName
  const app = await buildApp(config, { logger: false })
  t.teardown(() => app.close())

  const pending = await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })
  t.equal(pending.statusCode, 503)
  t.match(pending.headers['content-type'], /^application\/problem\+json/)
  t.match(pending.json(), { code: 'unavailable', detail: 'Not ready: 1 database migration pending.' })
  t.equal(pending.headers['retry-after'], '5')
  t.equal((await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })).statusCode, 503, 'still, while it is')

  await migrateToLatest(app.db)
  const ready = await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })
  t.equal(ready.statusCode, 200, 'ready once migrated, without a restart')
  t.same(ready.json(), { status: 'ready', checks: { database: 'ok', redis: 'ok' } })

  // Known to match now: later probes do not read the migrations again (a forged gap goes unseen).
  await app.db.deleteFrom('kysely_migration' as never).where('name' as never, '=', last as never).execute()
  t.equal((await app.inject({ method: 'GET', url: '/readyz', headers: bearer(metricsToken) })).statusCode, 200)
})

t.test('getMetrics › valid › counts requests by route pattern and status and shows queue depth', async (t) => {
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  await app.inject({ method: 'GET', url: '/v1/apps/none-such' })
  await app.inject({ method: 'GET', url: '/v1/regions' })

  const res = await app.inject({ method: 'GET', url: '/metrics', headers: bearer(metricsToken) })

  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/plain/)
  t.match(res.body, /http_requests_total\{method="GET",route="\/v1\/apps\/:appId",status_code="404"\} 1/)
  t.match(res.body, /http_request_duration_seconds_bucket\{le="[0-9.]+",method="GET",route="\/v1\/regions",status_code="200"\}/)
  t.match(res.body, /queue_jobs\{queue="cache-purge",state="waiting"\} 0/)
  t.notMatch(res.body, /none-such/, 'ids never become labels')
})

t.test('getJwks › valid › publishes the ES256 key that verifies our access tokens', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['cache-control'], /^public, max-age=300/)
  const [jwk] = res.json().keys
  t.match(jwk, { kty: 'EC', crv: 'P-256', alg: 'ES256', use: 'sig' })
  t.notOk('d' in jwk, 'no private part')

  const token = await given(app).token({ sub: 'user-1', role: 'admin', scopes: ['catalog:write'] })
  const [header, payload, signature] = token.split('.')
  t.equal(JSON.parse(Buffer.from(header!, 'base64url').toString()).kid, jwk.kid, 'tokens name the key')
  const ok = verify('sha256', Buffer.from(`${header}.${payload}`), { key: createPublicKey({ key: jwk, format: 'jwk' }), dsaEncoding: 'ieee-p1363' }, Buffer.from(signature!, 'base64url'))
  t.ok(ok, 'a third party verifies our token with the published key')
})
