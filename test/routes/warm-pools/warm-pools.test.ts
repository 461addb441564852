// Issue 22, items 3-5: the operators' side of the warm pools (tag warm-pools): capacity per pool, paginated;
// pausing, resuming and the maximum age; schedules (created, listed, deleted, overlaps refused). The
// reconciliation pass itself: test/services/containers/warm-pool-reconciliation.test.ts.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { TestClock } from '../../helpers/clock.js'

type App = Awaited<ReturnType<typeof build>>
type Offer = { app: string, region: string }

const poolUrl = (o: Offer) => `/v1/admin/warm-pools/${o.app}/${o.region}`
const schedulesUrl = (o: Offer) => `${poolUrl(o)}/schedules`
const mornings = { name: 'Weekday mornings', days: ['mon', 'tue', 'wed', 'thu', 'fri'], start: '07:00', end: '12:00', timeZone: 'Europe/Paris', desired: 6 }

async function operator (app: App) {
  return (await given(app).signedIn({ role: 'developer' })).headers
}
const auditOf = (app: App, action: string) => app.db.selectFrom('audit_event').selectAll().where('action', '=', action).execute()
const schedulesIn = (app: App, o: Offer) => app.db.selectFrom('warm_pool_schedule').selectAll().where('app_id', '=', o.app).where('region_code', '=', o.region).execute()

t.test('listWarmPools › valid › each pool\'s capacity: desired, available, starting, in use, failing, paused, last pass', async (t) => {
  const app = await fileApp({ SIMULATED_START_MS: '600000' })
  const offer = await given(app).offer()
  const headers = await operator(app)
  await app.db.updateTable('app_region').set({ warm_pool_target: 4 }).where('app_id', '=', offer.app).execute()
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)
  const holder = await given(app).user()
  await app.db.insertInto('container').values([
    { app_id: offer.app, region_code: offer.region, user_id: holder.id, state: 'in_use', aes_key: 'k', secret_hash: randomUUID() },
    { app_id: offer.app, region_code: offer.region, user_id: null, state: 'starting', aes_key: 'k', secret_hash: randomUUID() },
    { app_id: offer.app, region_code: offer.region, user_id: null, state: 'failed', aes_key: 'k', secret_hash: randomUUID(), failure_reason: 'start_failed' }
  ]).execute()

  const res = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}`, headers })

  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    items: [{
      app: offer.app,
      region: offer.region,
      target: 4,
      desired: 4,
      available: 2,
      ready: 2,
      starting: 1,
      inUse: 1,
      failing: 1,
      paused: false,
      pausedAt: null,
      maxAgeSeconds: null,
      effectiveMaxAgeSeconds: 86400,
      replacing: 0,
      recycleBefore: null,
      schedule: null,
      lastPass: null
    }],
    nextCursor: null
  })

  // After a pass, the pool says what it decided and when.
  t.match(await app.schedules.runOnce('warm-pools'), { started: 1 })
  const after = (await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}`, headers })).json().items[0]
  t.match(after, { starting: 2, lastPass: { decision: 'grow', desired: 4, started: 1, stopped: 0, reason: /desired 4 \(base target\)/ } })
  t.ok(Date.parse(after.lastPass.at) > Date.now() - 60_000)
})

t.test('listWarmPools › valid › paginated by app then region with the cursor codec', async (t) => {
  const app = await fileApp()
  const headers = await operator(app)
  const region = await given(app).region()
  const apps = []
  for (let i = 0; i < 3; i++) apps.push((await given(app).app({ regions: [region.code] })).id)
  const seen: string[] = []
  let cursor: string | null = null
  do {
    const res: Awaited<ReturnType<App['inject']>> = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?region=${region.code}&limit=2${cursor ? `&cursor=${cursor}` : ''}`, headers })
    t.equal(res.statusCode, 200)
    seen.push(...res.json().items.map((p: { app: string }) => p.app))
    cursor = res.json().nextCursor
  } while (cursor)
  t.same(seen, [...apps].sort(), 'every pool once, in order')
})

t.test('listWarmPools › invalid input › a cursor this API did not make is 400', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/admin/warm-pools?cursor=bm90LWEtY3Vyc29y', headers: await operator(app) })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'bad_request' })
})

t.test('updateWarmPool › valid › pause, resume and a maximum age are kept, shown and audited', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })
  await app.db.updateTable('app_region').set({ warm_pool_target: 3 }).where('app_id', '=', offer.app).execute()

  const paused = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: true, maxAgeSeconds: 3600 }, headers: dev.headers })
  t.equal(paused.statusCode, 200)
  t.match(paused.json(), { app: offer.app, region: offer.region, paused: true, maxAgeSeconds: 3600, effectiveMaxAgeSeconds: 3600, target: 3 })
  t.ok(paused.json().pausedAt)

  const resumed = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: false }, headers: dev.headers })
  t.match(resumed.json(), { paused: false, pausedAt: null, maxAgeSeconds: 3600, target: 3 }, 'resuming keeps the settings')
  const cleared = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { maxAgeSeconds: null }, headers: dev.headers })
  t.match(cleared.json(), { maxAgeSeconds: null, effectiveMaxAgeSeconds: 86400 }, 'null: the default again')

  t.match(await auditOf(app, 'warm_pool.paused'), [{ actor_id: dev.account.id, target_id: `${offer.app}/${offer.region}` }])
  t.match(await auditOf(app, 'warm_pool.resumed'), [{ actor_id: dev.account.id }])
  t.match(await auditOf(app, 'warm_pool.max_age_set'), [{ details: { from: null, to: 3600 } }, { details: { from: 3600, to: null } }])
  const again = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: false }, headers: dev.headers })
  t.equal(again.statusCode, 200)
  t.equal((await auditOf(app, 'warm_pool.resumed')).length, 1, 'no change, no audit event')
})

t.test('updateWarmPool › insufficient permissions › no token 401, a user or read-only token 403, nothing changes', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const readOnly = await given(app).token({ role: 'developer', scopes: ['fleet:read'] })
  t.equal((await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: true } })).statusCode, 401)
  const forbidden = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: true }, headers: user.headers })
  t.equal(forbidden.statusCode, 403)
  t.match(forbidden.json(), { code: 'forbidden' })
  t.equal((await app.inject({ method: 'PATCH', url: poolUrl(offer), payload: { paused: true }, headers: bearer(readOnly) })).statusCode, 403)
  t.same(await app.db.selectFrom('warm_pool').selectAll().where('app_id', '=', offer.app).execute(), [], 'no pool settings written')
})

t.test('updateWarmPool › invalid input › an empty body, a wrong type, a negative or huge age, an unknown field are 400', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const headers = await operator(app)
  for (const payload of [{}, { paused: 'yes' }, { maxAgeSeconds: -1 }, { maxAgeSeconds: 2592001 }, { paused: true, target: 3 }]) {
    const res = await app.inject({ method: 'PATCH', url: poolUrl(offer), payload, headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.json(), { code: 'validation_failed' })
  }
  t.same(await app.db.selectFrom('warm_pool').selectAll().where('app_id', '=', offer.app).execute(), [])
})

t.test('updateWarmPool › non-existing › an app not offered in the region is 404', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const res = await app.inject({ method: 'PATCH', url: poolUrl({ app: offer.app, region: 'zz-nowhere-1' }), payload: { paused: true }, headers: await operator(app) })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
})

t.test('recycleWarmPool › valid › 202 with the instant and the ready containers to replace, audited; again moves the instant', async (t) => {
  const clock = new TestClock()
  const app = await build(t, {}, { clock })
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)

  const recycle = async () => {
    const [before, res, after] = [clock.now(), await app.inject({ method: 'POST', url: `${poolUrl(offer)}/recycle`, headers: dev.headers }), clock.now()]
    const at = Date.parse(res.json().recycleBefore)
    t.ok(at >= before && at <= after, 'the instant is now on the app\'s clock')
    return res
  }
  const res = await recycle()
  t.equal(res.statusCode, 202)
  t.match(res.json(), { app: offer.app, region: offer.region, available: 2, replacing: 2 })
  t.match(await auditOf(app, 'warm_pool.recycled'), [{ actor_id: dev.account.id, target_id: `${offer.app}/${offer.region}`, details: { replacing: 2 } }])

  clock.advance(60_000)
  const again = await recycle()
  t.equal(again.statusCode, 202)
  t.ok(Date.parse(again.json().recycleBefore) >= Date.parse(res.json().recycleBefore) + 60_000, 'the instant moves to now')
  const listed = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}`, headers: dev.headers })
  t.match(listed.json().items, [{ replacing: 2, recycleBefore: again.json().recycleBefore }], 'the list shows it too')
})

t.test('recycleWarmPool › insufficient permissions › no token 401, a user or read-only token 403; nothing is recorded', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const readOnly = await given(app).token({ role: 'developer', scopes: ['fleet:read'] })
  const url = `${poolUrl(offer)}/recycle`
  t.equal((await app.inject({ method: 'POST', url })).statusCode, 401)
  const forbidden = await app.inject({ method: 'POST', url, headers: user.headers })
  t.equal(forbidden.statusCode, 403)
  t.match(forbidden.headers['content-type'], /application\/problem\+json/)
  t.equal((await app.inject({ method: 'POST', url, headers: bearer(readOnly) })).statusCode, 403)
  t.same(await app.db.selectFrom('warm_pool').selectAll().execute(), [], 'no recycle written')
  t.same(await auditOf(app, 'warm_pool.recycled'), [])
})

t.test('recycleWarmPool › invalid input › a malformed app or region is 400', async (t) => {
  const app = await fileApp()
  const headers = await operator(app)
  for (const url of ['/v1/admin/warm-pools/Not_An_App/us-east-1/recycle', '/v1/admin/warm-pools/chrome/US%20EAST/recycle']) {
    const res = await app.inject({ method: 'POST', url, headers })
    t.equal(res.statusCode, 400, url)
    t.match(res.json(), { code: 'validation_failed' })
  }
})

t.test('recycleWarmPool › non-existing › an app not offered in the region is 404; nothing is recorded', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const res = await app.inject({ method: 'POST', url: poolUrl({ app: offer.app, region: 'zz-nowhere-1' }) + '/recycle', headers: await operator(app) })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
  t.same(await app.db.selectFrom('warm_pool').selectAll().where('app_id', '=', offer.app).execute(), [])
})

t.test('createWarmPoolSchedule › valid › a schedule is stored and audited; another beside it is accepted', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })

  const res = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: dev.headers })

  t.equal(res.statusCode, 201)
  t.equal(res.headers.location, schedulesUrl(offer))
  t.match(res.json(), { ...mornings, id: /^[0-9a-f-]{36}$/ })
  const always = await app.inject({ method: 'POST', url: schedulesUrl({ app: offer.app, region: offer.region }), payload: { days: ['sat', 'sun'], start: '00:00', end: '24:00', timeZone: 'Europe/Paris', desired: 2 }, headers: dev.headers })
  t.equal(always.statusCode, 201, 'next to it, not overlapping')
  t.match(await auditOf(app, 'warm_pool.schedule_created'), [
    { actor_id: dev.account.id, target_id: `${offer.app}/${offer.region}`, details: { scheduleId: res.json().id } },
    { details: { scheduleId: always.json().id } }
  ])
  t.equal((await schedulesIn(app, offer)).length, 2)
})

t.test('createWarmPoolSchedule › invalid input › malformed times, days or counts are 400; nothing is stored', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const headers = await operator(app)
  const bad = [
    { ...mornings, start: '7:00' }, { ...mornings, end: '24:30' }, { ...mornings, start: '25:00' }, { ...mornings, days: [] },
    { ...mornings, days: ['mon', 'mon'] }, { ...mornings, days: ['monday'] }, { ...mornings, desired: -1 }, { ...mornings, desired: 1001 },
    { ...mornings, timeZone: 'Europe/Paris; drop' }, { ...mornings, extra: 1 }, { days: ['mon'], start: '07:00', end: '08:00', desired: 1 }
  ]
  for (const payload of bad) {
    const res = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload, headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.json(), { code: 'validation_failed' })
  }
  t.same(await schedulesIn(app, offer), [])
})

t.test('createWarmPoolSchedule › invalid input › an overlap is 422 naming the other schedule; so are another time zone and an unknown one', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const headers = await operator(app)
  const first = (await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { ...mornings, name: 'Weekday mornings' }, headers })).json()
  const nights = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { name: 'Friday night', days: ['fri'], start: '22:00', end: '08:00', timeZone: 'Europe/Paris', desired: 1 }, headers })
  t.equal(nights.statusCode, 201, 'Friday 22:00 to Saturday 08:00 touches no weekday morning')

  // Monday 11:30-13:00 overlaps the mornings; Saturday 07:00 overlaps Friday night past midnight.
  const overlap = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['mon'], start: '11:30', end: '13:00', timeZone: 'Europe/Paris', desired: 2 }, headers })
  t.equal(overlap.statusCode, 422)
  t.match(overlap.json(), { code: 'unprocessable', title: 'Schedules overlap', detail: new RegExp(`${first.id} \\(Weekday mornings\\)`), errors: [{ field: '/body/days', message: `overlaps schedule ${first.id}` }] })
  const pastMidnight = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['sat'], start: '07:00', end: '09:00', timeZone: 'Europe/Paris', desired: 2 }, headers })
  t.equal(pastMidnight.statusCode, 422)
  t.match(pastMidnight.json().detail, nights.json().id)
  // Sunday 23:00 to Monday 07:30 wraps the week into the mornings.
  const wraps = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['sun'], start: '23:00', end: '07:30', timeZone: 'Europe/Paris', desired: 2 }, headers })
  t.equal(wraps.statusCode, 422)
  t.match(wraps.json().detail, first.id)

  const otherZone = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['sun'], start: '10:00', end: '11:00', timeZone: 'America/New_York', desired: 2 }, headers })
  t.equal(otherZone.statusCode, 422)
  t.match(otherZone.json(), { errors: [{ field: '/body/timeZone' }], detail: /Europe\/Paris/ })
  const unknown = await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['sun'], start: '10:00', end: '11:00', timeZone: 'Mars/Olympus_Mons', desired: 2 }, headers })
  t.equal(unknown.statusCode, 422)
  t.match(unknown.json(), { code: 'unprocessable', errors: [{ field: '/body/timeZone' }] })
  t.equal((await schedulesIn(app, offer)).length, 2, 'nothing refused was stored')
})

t.test('createWarmPoolSchedule › insufficient permissions › no token 401, a user or read-only token 403', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const readOnly = await given(app).token({ role: 'developer', scopes: ['fleet:read'] })
  t.equal((await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: bearer(readOnly) })).statusCode, 403)
  t.same(await schedulesIn(app, offer), [])
})

t.test('createWarmPoolSchedule › non-existing › a pool that does not exist is 404', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'POST', url: schedulesUrl({ app: 'no-such-app', region: 'us-east-1' }), payload: mornings, headers: await operator(app) })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
})

t.test('listWarmPoolSchedules › valid › the pool\'s schedules, oldest first, and only that pool\'s', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const other = await given(app).offer()
  const headers = await operator(app)
  const a = (await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers })).json()
  const b = (await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: { days: ['sat'], start: '22:00', end: '06:00', timeZone: 'Europe/Paris', desired: 0 }, headers })).json()
  await app.inject({ method: 'POST', url: schedulesUrl(other), payload: mornings, headers })

  const res = await app.inject({ method: 'GET', url: schedulesUrl(offer), headers })

  t.equal(res.statusCode, 200)
  t.same(res.json().items.map((s: { id: string }) => s.id), [a.id, b.id])
  t.match(res.json().items[1], { start: '22:00', end: '06:00', name: null, desired: 0 })
})

t.test('listWarmPoolSchedules › insufficient permissions › no token 401, a user 403', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: schedulesUrl(offer) })).statusCode, 401)
  const res = await app.inject({ method: 'GET', url: schedulesUrl(offer), headers: user.headers })
  t.equal(res.statusCode, 403)
  t.match(res.headers['content-type'], /application\/problem\+json/)
})

t.test('listWarmPoolSchedules › invalid input › a malformed app or region is 400', async (t) => {
  const app = await fileApp()
  const headers = await operator(app)
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/warm-pools/NOT_AN_APP/us-east-1/schedules', headers })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/warm-pools/chrome/nowhere/schedules', headers })).statusCode, 400)
})

t.test('listWarmPoolSchedules › non-existing › a pool that does not exist is 404', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: schedulesUrl({ app: 'no-such-app', region: 'us-east-1' }), headers: await operator(app) })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
})

t.test('deleteWarmPoolSchedule › valid › the schedule goes, audited; its slot can be taken again', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })
  const created = (await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: dev.headers })).json()

  const res = await app.inject({ method: 'DELETE', url: `${schedulesUrl(offer)}/${created.id}`, headers: dev.headers })

  t.equal(res.statusCode, 204)
  t.same(await schedulesIn(app, offer), [])
  t.match(await auditOf(app, 'warm_pool.schedule_deleted'), [{ actor_id: dev.account.id, details: { scheduleId: created.id } }])
  t.equal((await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: dev.headers })).statusCode, 201, 'no overlap with a deleted one')
})

t.test('deleteWarmPoolSchedule › insufficient permissions › no token 401, a user or read-only token 403; the schedule stays', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const created = (await app.inject({ method: 'POST', url: schedulesUrl(offer), payload: mornings, headers: await operator(app) })).json()
  const user = await given(app).signedIn()
  const readOnly = await given(app).token({ role: 'developer', scopes: ['fleet:read'] })
  const url = `${schedulesUrl(offer)}/${created.id}`
  t.equal((await app.inject({ method: 'DELETE', url })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url, headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'DELETE', url, headers: bearer(readOnly) })).statusCode, 403)
  t.equal((await schedulesIn(app, offer)).length, 1)
})

t.test('deleteWarmPoolSchedule › invalid input › a schedule id that is not a uuid is 400', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const res = await app.inject({ method: 'DELETE', url: `${schedulesUrl(offer)}/not-a-uuid`, headers: await operator(app) })
  t.equal(res.statusCode, 400)
  t.match(res.json(), { code: 'validation_failed' })
})

t.test('deleteWarmPoolSchedule › non-existing › an unknown schedule, or another pool\'s, is 404', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const other = await given(app).offer()
  const headers = await operator(app)
  const theirs = (await app.inject({ method: 'POST', url: schedulesUrl(other), payload: mornings, headers })).json()
  const unknown = await app.inject({ method: 'DELETE', url: `${schedulesUrl(offer)}/${randomUUID()}`, headers })
  t.equal(unknown.statusCode, 404)
  t.match(unknown.json(), { code: 'not_found' })
  t.equal((await app.inject({ method: 'DELETE', url: `${schedulesUrl(offer)}/${theirs.id}`, headers })).statusCode, 404)
  t.equal((await schedulesIn(app, other)).length, 1, 'the other pool keeps its schedule')
})
