// `npm start` on a fresh machine: no DATABASE_URL, no REDIS_URL, no keys.
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { given } from './helpers/given.js'
import { buildApp } from '../app.js'
import { loadConfig } from '../plugins/config.js'
import { until } from './helpers/wait.js'

t.test('embedded defaults › PGlite, in-process queue and generated keys serve the seeded catalog', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const metricsToken = 'embedded-test-scrape-token-0123456789'
  const app = await buildApp(loadConfig({ NODE_ENV: 'development', DATA_DIR: dataDir, LOG_LEVEL: 'silent', METRICS_TOKEN: metricsToken }), { logger: false })
  t.teardown(() => app.close())
  await app.ready()

  t.equal(app.queue.kind, 'in-process')
  t.ok(existsSync(join(dataDir, 'jwt', 'private.pem')), 'a key pair was generated')
  t.ok(existsSync(join(dataDir, 'pglite')), 'the database lives in DATA_DIR')

  const regions = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(regions.statusCode, 200)
  t.ok(regions.json().items.length >= 10, 'the seeded regions')
  t.match(regions.json().items[0], { code: 'us-east-1', name: 'US East (N. Virginia)' })

  const apps = await app.inject({ method: 'GET', url: '/v1/apps', query: { limit: '100' } })
  t.ok(apps.json().items.some((a: { id: string }) => a.id === 'chrome'))

  const ready = await app.inject({ method: 'GET', url: '/readyz', headers: { authorization: `Bearer ${metricsToken}` } })
  t.same(ready.json(), { status: 'ready', checks: { database: 'ok', redis: 'skipped' } })

  // PGlite has one session: concurrent transactions take turns instead of interleaving or hanging.
  const results = await Promise.all(Array.from({ length: 8 }, (_, i) => app.db.transaction().execute(async (trx) => {
    await trx.updateTable('region').set({ sort_order: i }).where('code', '=', 'us-east-1').execute()
    await new Promise((resolve) => setTimeout(resolve, 5))
    const row = await trx.selectFrom('region').select('sort_order').where('code', '=', 'us-east-1').executeTakeFirstOrThrow()
    return row.sort_order === i
  })))
  t.same(results, Array(8).fill(true), 'each transaction saw only its own write')

  const token = await given(app).token({ role: 'admin', scopes: ['catalog:write'] })
  const patched = await app.inject({ method: 'PATCH', url: '/v1/regions/sa-east-1', payload: { enabled: true }, headers: { authorization: `Bearer ${token}` } })
  t.equal(patched.statusCode, 200)
  app.queue.startWorker(1)
  t.ok(await until(async () => (await app.queue.counts('cache-purge')).succeeded >= 1), 'the in-process worker ran the purge job')
  t.equal((await app.queue.counts('cache-purge')).succeeded, 1, 'one purge job')
})

t.test('embedded defaults › a container starts on the simulator and its first ping makes it ready (PGlite runs the SQL functions)', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const app = await buildApp(loadConfig({ NODE_ENV: 'development', DATA_DIR: dataDir, LOG_LEVEL: 'silent', SIMULATED_START_MS: '50', CONTAINER_POLL_MS: '20' }), { logger: false })
  t.teardown(() => app.close())
  await app.ready()
  app.queue.startWorker(2)

  const signUp = await app.db.insertInto('account').values({ email: 'embedded@example.test', name: 'Embedded', email_verified_at: new Date() }).returning('id').executeTakeFirstOrThrow()
  const token = app.issueAccessToken({ sub: signUp.id, role: 'user', scopes: ['containers'], sid: 'embedded-session' })
  const headers = { authorization: `Bearer ${token}`, 'idempotency-key': 'embedded-first-container' }
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: 'blender', region: 'us-east-1' }, headers })
  t.equal(res.statusCode, 202, 'blender keeps no warm pool: a start job')
  const { job, container } = res.json()
  let state = ''
  // No deadline of ours (it would measure the machine): tap's limit bounds the wait.
  while (state !== 'succeeded' && state !== 'failed') {
    state = (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers })).json().state
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  t.equal(state, 'succeeded')
  const read = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers })
  t.match(read.json(), { state: 'in_use', connection: null, connectable: true }, 'in use; its connection details only with a grant')
  const grant = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/grants`, payload: { lifetimeSeconds: 60 }, headers: { authorization: headers.authorization } })
  t.match(grant.json(), { connection: { ip: /^203\.0\.113\./ } }, 'a grant carries the simulated host\'s address')
  const replay = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: 'blender', region: 'us-east-1' }, headers })
  t.equal(replay.json().container.id, container.id, 'the Idempotency-Key replay returns the same container')
})

t.test('embedded defaults › job event streams are pushed (PGlite updates, in-process broadcast) and capped without Redis', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-embedded-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const app = await buildApp(loadConfig({
    NODE_ENV: 'development', DATA_DIR: dataDir, LOG_LEVEL: 'silent', SIMULATED_START_MS: '50', CONTAINER_POLL_MS: '20', EVENT_STREAMS_PER_USER: '1', JOB_EVENTS_RESYNC_MS: '600000'
  }), { logger: false })
  t.teardown(() => app.close())
  await app.ready()

  const account = await app.db.insertInto('account').values({ email: 'streams@example.test', name: 'Streams', email_verified_at: new Date() }).returning('id').executeTakeFirstOrThrow()
  const token = app.issueAccessToken({ sub: account.id, role: 'user', scopes: ['containers'], sid: 'embedded-streams' })
  const headers = { authorization: `Bearer ${token}` }
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: 'blender', region: 'us-east-1' }, headers: { ...headers, 'idempotency-key': 'embedded-streams' } })
  const { job } = res.json()
  const first = app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers })
  t.ok(await until(() => app.eventStreams.open === 1), 'the first stream is open')
  const second = await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers })
  t.equal(second.statusCode, 429, 'the second is over EVENT_STREAMS_PER_USER')
  app.queue.startWorker(2)
  t.match((await first).body, /event: succeeded/, 'the end is pushed (the resync is ten minutes away)')
  t.ok(await until(() => app.eventStreams.open === 0), 'and the place is given back')
})
