import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const put = (app: App, headers: Record<string, string>, payload: object) => app.inject({ method: 'PUT', url: '/v1/admin/maintenance', payload, headers })

t.test('setMaintenance › valid › a region window refuses new assignments there with 503 and the message, then ends', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const offer = await given(app).offer()
  const user = await given(app).signedIn()

  const on = await put(app, admin.headers, { enabled: true, region: offer.region, message: 'Swapping GPUs', minutes: 30 })
  t.equal(on.statusCode, 200)
  t.match(on.json(), { windows: [{ scope: offer.region, message: 'Swapping GPUs' }], runningJobs: 0 })

  const refused = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app, region: offer.region }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(refused.statusCode, 503)
  t.match(refused.json(), { code: 'maintenance', detail: 'Swapping GPUs' })
  const retryAfter = Number(refused.headers['retry-after'])
  t.ok(retryAfter > 1700 || retryAfter === 3600, `Retry-After ${retryAfter}`)
  t.equal((await app.db.selectFrom('container').selectAll().execute()).length, 0, 'nothing written')

  const status = await app.inject({ method: 'GET', url: '/v1/status' })
  t.equal(status.json().status, 'degraded')
  t.match(status.json().regions.find((r: { code: string }) => r.code === offer.region), { status: 'maintenance', message: 'Swapping GPUs' })

  const off = await put(app, admin.headers, { enabled: false, region: offer.region })
  t.same(off.json().windows, [])
  const key = randomUUID()
  const accepted = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app, region: offer.region }, headers: { ...user.headers, 'idempotency-key': key } })
  t.equal(accepted.statusCode, 202, 'the same request goes through after the window')
  const audit = await app.db.selectFrom('audit_event').select('action').where('target_type', '=', 'maintenance').execute()
  t.same(audit.map((a) => a.action), ['maintenance.started', 'maintenance.ended'])
})

t.test('setMaintenance › valid › a window ends by itself: an expired one refuses nothing', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  await app.db.insertInto('maintenance').values({ scope: 'global', message: 'crashed operator', owner_id: null, ends_at: new Date(Date.now() - 1000) }).execute()
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(res.statusCode, 202)
  t.equal((await app.inject({ method: 'GET', url: '/v1/status' })).json().status, 'ok')
})

t.test('setMaintenance › insufficient permissions › users and developers get 403, no token 401', async (t) => {
  const app = await build(t)
  for (const role of ['user', 'developer'] as const) {
    const someone = await given(app).signedIn({ role })
    t.equal((await put(app, someone.headers, { enabled: true })).statusCode, 403, role)
  }
  t.equal((await put(app, {}, { enabled: true })).statusCode, 401)
  t.equal((await app.db.selectFrom('maintenance').selectAll().execute()).length, 0)
})

t.test('setMaintenance › invalid input › bad fields are 400 and nothing changes', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  for (const payload of [{}, { enabled: 'yes' }, { enabled: true, minutes: 0 }, { enabled: true, minutes: 20000 }, { enabled: true, region: 'Mars' }, { enabled: true, owner: 'x' }]) {
    t.equal((await put(app, admin.headers, payload)).statusCode, 400, JSON.stringify(payload))
  }
  t.equal((await app.db.selectFrom('maintenance').selectAll().execute()).length, 0)
})

t.test('setMaintenance › non-existing › an unknown region is 404', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await put(app, admin.headers, { enabled: true, region: 'zz-nowhere-1' })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('getStatus › valid › a global window puts everything in maintenance; the answer is edge-cacheable', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  await given(app).region({ code: 'eu-west-5' })
  await put(app, admin.headers, { enabled: true, message: 'Database upgrade' })
  const res = await app.inject({ method: 'GET', url: '/v1/status' })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { status: 'maintenance', message: 'Database upgrade', regions: [{ code: 'eu-west-5', status: 'maintenance' }] })
  t.match(res.headers['cache-control'], /^public, max-age=10/)
  t.equal(res.headers['surrogate-key'], 'status')
})

t.test('getStatus › valid › a disabled region shows as disabled but degrades nothing; an enabled one in maintenance does (issue 20)', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const enabled = await given(app).region({ code: 'eu-west-6' })
  await given(app).region({ code: 'eu-west-7', enabled: false })
  const fresh = await app.inject({ method: 'GET', url: '/v1/status' })
  t.equal(fresh.json().status, 'ok', 'a fresh install with a disabled region reads ok')
  t.match(fresh.json().regions.find((r: { code: string }) => r.code === 'eu-west-7'), { status: 'disabled' })

  await put(app, admin.headers, { enabled: true, region: 'eu-west-7', message: 'Not offered anyway' })
  const disabledInMaintenance = await app.inject({ method: 'GET', url: '/v1/status' })
  t.equal(disabledInMaintenance.json().status, 'ok', 'a window on a disabled region degrades nothing')

  await put(app, admin.headers, { enabled: true, region: enabled.code, message: 'Swapping GPUs' })
  const res = await app.inject({ method: 'GET', url: '/v1/status' })
  t.equal(res.json().status, 'degraded')
})
