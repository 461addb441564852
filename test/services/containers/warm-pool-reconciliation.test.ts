// Issue 22, items 3-5: the reconciliation pass (refillWarmPools, run as the worker runs it, through
// app.schedules.runOnce) follows the schedule in force on the app's clock (TestClock), leaves a paused pool
// alone, replaces warm containers past their maximum age without ever stopping one in use; a pause racing
// claims; /metrics reports the pools.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { sql } from '../../../db/kysely.js'
import { build, type Overrides } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { until } from '../../helpers/wait.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
type Offer = { app: string, region: string }

// Starts never finish on their own (the simulated start takes ten minutes): what the pass started stays `starting`.
const slow: Overrides = { SIMULATED_START_MS: '600000', WARM_POOL_INTERVAL_MS: '100', METRICS_TOKEN: 'warm-pool-metrics-token-0123456789' }

/** An operator's headers, with a token issued now on the app's clock (the tests move it past a token's lifetime). */
async function as (app: App) {
  return bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read', 'fleet:write'] }))
}
async function call (app: App, method: 'GET' | 'PUT' | 'PATCH' | 'POST', url: string, payload?: object) {
  const res = await app.inject({ method, url, ...(payload ? { payload } : {}), headers: await as(app) })
  if (res.statusCode >= 300) throw new Error(`${method} ${url} answered ${res.statusCode}: ${res.body}`)
  return res.json()
}
const pool = async (app: App, o: Offer) => (await call(app, 'GET', `/v1/admin/warm-pools?app=${o.app}&region=${o.region}`)).items[0]
const pass = (app: App) => app.schedules.runOnce('warm-pools')
const unheld = (app: App, o: Offer) => app.db.selectFrom('container').selectAll()
  .where('app_id', '=', o.app).where('region_code', '=', o.region).where('user_id', 'is', null).orderBy('created_at').execute()
const countBy = (rows: Array<{ state: string }>) => rows.reduce<Record<string, number>>((acc, r) => ({ ...acc, [r.state]: (acc[r.state] ?? 0) + 1 }), {})
/** What the pass started comes up (as the start job and the first ping would make it). */
const comeUp = (app: App, o: Offer) => app.db.updateTable('container').set({ state: 'available', host_ip: '198.51.100.9', port_32262: 41000, port_32263: 41001, port_32273: 41002, running_at: sql`now()` })
  .where('app_id', '=', o.app).where('region_code', '=', o.region).where('user_id', 'is', null).where('state', 'in', ['creating', 'starting']).execute()
const assign = (app: App, headers: Record<string, string>, o: Offer) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: { app: o.app, region: o.region }, headers: { ...headers, 'idempotency-key': randomUUID() } })

/**
 * A pool with a target of 2: two warm containers, one of them then claimed by a user (`held`), so one still
 * waits (`waiting`), and a third warm one made after the claim (`another`).
 */
async function poolOfThreeOneHeld (t: Test, app: App) {
  const offer = await given(app).offer()
  await call(app, 'PUT', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { target: 2 })
  const old = [await given(app).warmContainer(offer), await given(app).warmContainer(offer)]
  const holder = await given(app).signedIn()
  t.equal((await assign(app, holder.headers, offer)).statusCode, 201)
  const held = await app.db.selectFrom('container').selectAll().where('user_id', '=', holder.account.id).executeTakeFirstOrThrow()
  const waiting = old.filter((c) => c.id !== held.id)
  const another = await given(app).warmContainer(offer)
  return { offer, held, waiting, another }
}

t.test('warm-pools › valid › the pass follows the schedule in force across a day boundary of its time zone', async (t) => {
  const clock = new TestClock()
  // No maximum age here: the clock moves days ahead of the rows' real creation times.
  const app = await build(t, { ...slow, WARM_POOL_MAX_AGE_S: '0' }, { clock })
  const offer = await given(app).offer()
  await call(app, 'PUT', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { target: 1 })
  // Monday 00:00-06:00 in Tokyo (UTC+9) is Sunday 15:00-21:00 UTC: Tokyo's Monday starts while UTC's Sunday goes on.
  const early = await call(app, 'POST', `/v1/admin/warm-pools/${offer.app}/${offer.region}/schedules`,
    { name: 'Tokyo Monday small hours', days: ['mon'], start: '00:00', end: '06:00', timeZone: 'Asia/Tokyo', desired: 3 })
  const setClock = (iso: string) => clock.advance(Date.parse(iso) - clock.now())

  setClock('2026-12-13T14:30:00Z') // Sunday 23:30 in Tokyo
  t.same(await pass(app), { started: 1, stopped: 0 })
  t.match(await pool(app, offer), { desired: 1, schedule: null, starting: 1, lastPass: { decision: 'grow', desired: 1, started: 1, at: '2026-12-13T14:30' } })

  setClock('2026-12-13T15:30:00Z') // Monday 00:30 in Tokyo, still Sunday in UTC
  t.same(await pass(app), { started: 2, stopped: 0 }, 'the schedule is in force: two more')
  t.match(await pool(app, offer), { desired: 3, schedule: { id: early.id, name: 'Tokyo Monday small hours' }, starting: 3, lastPass: { decision: 'grow', desired: 3, reason: new RegExp(`schedule ${early.id}`) } })
  t.same(await pass(app), { started: 0, stopped: 0 }, 'those on their way count')

  await comeUp(app, offer)
  const holder = await given(app).signedIn()
  const holding = await assign(app, holder.headers, offer)
  t.equal(holding.statusCode, 201, 'a user holds one of them')
  setClock('2026-12-13T21:30:00Z') // Monday 06:30 in Tokyo: the schedule is over, the base target again
  t.same(await pass(app), { started: 0, stopped: 1 }, 'the surplus above 1 is stopped')
  t.match(await pool(app, offer), { desired: 1, schedule: null, available: 1, inUse: 1, lastPass: { decision: 'shrink', stopped: 1 } })
  t.match(countBy(await unheld(app, offer)), { available: 1 })
  const held = await app.db.selectFrom('container').select('state').where('user_id', '=', holder.account.id).executeTakeFirstOrThrow()
  t.equal(held.state, 'in_use', 'the one in use is never stopped')

  setClock('2026-12-14T15:30:00Z') // Tuesday 00:30 in Tokyo: the Monday schedule does not apply
  t.same(await pass(app), { started: 0, stopped: 0 })
  t.match(await pool(app, offer), { desired: 1, schedule: null, lastPass: { decision: 'steady' } })
})

t.test('warm-pools › valid › a paused pool is neither refilled nor claimed from; resumed, it is both again, with its settings', async (t) => {
  const clock = new TestClock()
  const app = await build(t, slow, { clock })
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  await call(app, 'PUT', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { target: 3 })
  await call(app, 'PATCH', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { paused: true, maxAgeSeconds: 7200 })

  t.same(await pass(app), { started: 0, stopped: 0 }, 'no refill')
  t.match(await pool(app, offer), { paused: true, desired: 3, available: 1, lastPass: { decision: 'paused', started: 0, reason: /paused/ } })
  const user = await given(app).signedIn()
  const claim = await assign(app, user.headers, offer)
  t.equal(claim.statusCode, 202, 'no warm container from a paused pool: a new one starts')
  t.not(claim.json().container.id, warm.id)
  t.equal((await app.db.selectFrom('container').select('state').where('id', '=', warm.id).executeTakeFirstOrThrow()).state, 'available')

  // Older than the pool's maximum age while paused: still left alone.
  await app.db.updateTable('container').set({ created_at: new Date(clock.now() - 3 * 3600_000) }).where('id', '=', warm.id).execute()
  t.same(await pass(app), { started: 0, stopped: 0 })

  const resumed = await call(app, 'PATCH', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { paused: false })
  t.match(resumed, { paused: false, target: 3, maxAgeSeconds: 7200 }, 'its settings were kept')
  t.same(await pass(app), { started: 3, stopped: 0 }, 'refilled again; the expired one is not counted, so it is replaced')
  await comeUp(app, offer)
  const other = await given(app).signedIn()
  const warmClaim = await assign(app, other.headers, offer)
  t.equal(warmClaim.statusCode, 201, 'claims take from it again')
})

t.test('warm-pools › valid › containers past the maximum age are replaced first, then stopped; one in use never is', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { ...slow, WARM_POOL_MAX_AGE_S: '3600' }, { clock })
  const { offer, held, waiting: remaining, another } = await poolOfThreeOneHeld(t, app)
  // The clock moves two hours on: every container made so far is past the hour.
  clock.advance(2 * 3600_000)
  await app.db.updateTable('container').set({ created_at: sql`created_at - interval '2 hours'` }).where('id', '=', held.id).execute()

  t.same(await pass(app), { started: 2, stopped: 0 }, 'replacements first: the expired ones keep serving meanwhile')
  t.match(await pool(app, offer), { available: 2, starting: 2, lastPass: { decision: 'grow', reason: /2 past the maximum age of 3600 s, 2 kept until replaced/ } })
  t.same(await pass(app), { started: 0, stopped: 0 }, 'nothing more while they start')

  await comeUp(app, offer)
  // What came up was made "now" on the real clock: two hours before the test clock. Made at the test clock's now instead.
  await app.db.updateTable('container').set({ created_at: new Date(clock.now()) })
    .where('app_id', '=', offer.app).where('region_code', '=', offer.region).where('id', 'not in', [...remaining.map((c) => c.id), another.id, held.id]).execute()
  t.same(await pass(app), { started: 0, stopped: 2 }, 'replaced: the expired ones are stopped')
  const states = Object.fromEntries((await app.db.selectFrom('container').select(['id', 'state']).execute()).map((r) => [r.id, r.state]))
  for (const c of [...remaining, another]) t.match(states[c.id], /^stopp(ing|ed)$/, 'an expired warm container is stopped')
  t.equal(states[held.id], 'in_use', 'the one in use, older still, is untouched')
  t.match(await pool(app, offer), { available: 2, inUse: 1, lastPass: { decision: 'shrink', stopped: 2 } })
  const events = await app.db.selectFrom('container_event').select(['container_id', 'reason']).where('to_state', '=', 'stopping').execute()
  t.match(events, [{ reason: /maximum age/ }, { reason: /maximum age/ }])

  // The pool's own maximum age wins over the default: 0, no maximum.
  await call(app, 'PATCH', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { maxAgeSeconds: 0 })
  clock.advance(24 * 3600_000)
  t.same(await pass(app), { started: 0, stopped: 0 })
})

t.test('recycleWarmPool › valid › the pass replaces what was made before the recycle, then stops it; one in use, or made after, never is', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { ...slow, WARM_POOL_MAX_AGE_S: '0' }, { clock })
  const { offer, held, waiting, another } = await poolOfThreeOneHeld(t, app)
  t.same(await pass(app), { started: 0, stopped: 0 }, 'no maximum age: a full pool is steady')

  // The recycle instant is the app's clock: a minute on, everything made so far is before it.
  clock.advance(60_000)
  t.match(await call(app, 'POST', `/v1/admin/warm-pools/${offer.app}/${offer.region}/recycle`), { replacing: 2 })
  t.same(await pass(app), { started: 2, stopped: 0 }, 'replacements first: the old ones keep serving meanwhile')
  t.match(await pool(app, offer), { available: 2, starting: 2, replacing: 2, lastPass: { reason: /2 made before the recycle at \S+, 2 kept until replaced/ } })

  await comeUp(app, offer)
  // What came up was made "now" on the real clock, before the test clock's recycle: made after it instead.
  await app.db.updateTable('container').set({ created_at: new Date(clock.now() + 1000) })
    .where('app_id', '=', offer.app).where('region_code', '=', offer.region).where('id', 'not in', [...waiting.map((c) => c.id), another.id, held.id]).execute()
  t.same(await pass(app), { started: 0, stopped: 2 }, 'replaced: the old ones are stopped')
  const states = Object.fromEntries((await app.db.selectFrom('container').select(['id', 'state']).execute()).map((r) => [r.id, r.state]))
  for (const c of [...waiting, another]) t.match(states[c.id], /^stopp(ing|ed)$/, 'a container made before the recycle is stopped')
  t.equal(states[held.id], 'in_use', 'the one in use is untouched')
  t.match(await pool(app, offer), { available: 2, inUse: 1, replacing: 0 })
  const events = await app.db.selectFrom('container_event').select('reason').where('to_state', '=', 'stopping').execute()
  t.match(events, [{ reason: /recycled/ }, { reason: /recycled/ }])
  t.same(await pass(app), { started: 0, stopped: 0 }, 'done: the new ones stay')
})

t.test('recycleWarmPool › concurrency › claims racing the pass that stops recycled containers: no claimed container is stopped', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { ...slow, WARM_POOL_MAX_AGE_S: '0' }, { clock })
  const offer = await given(app).offer()
  await call(app, 'PUT', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { target: 4 })
  for (let i = 0; i < 8; i++) await given(app).warmContainer(offer)
  clock.advance(60_000)
  await call(app, 'POST', `/v1/admin/warm-pools/${offer.app}/${offer.region}/recycle`)
  const users = await Promise.all(Array.from({ length: 8 }, () => given(app).signedIn()))

  // The pass stops the four recycled ones above the target while eight users claim from the pool.
  const [passed, ...claims] = await Promise.all([pass(app), ...users.map((u) => assign(app, u.headers, offer))])

  t.ok(claims.every((c) => c.statusCode === 201 || c.statusCode === 202), claims.map((c) => c.statusCode).join(','))
  const rows = await app.db.selectFrom('container').select(['id', 'state', 'user_id']).where('app_id', '=', offer.app).execute()
  const claimed = rows.filter((r) => r.user_id !== null)
  t.equal(claimed.length, 8, 'every user holds one container')
  for (const c of claimed) t.match(c.state, /^(in_use|creating|starting)$/, 'a claimed container is never stopped')
  const stopped = rows.filter((r) => /^stopp/.test(r.state))
  t.ok(stopped.every((r) => r.user_id === null), 'only unheld ones were stopped')
  t.equal(stopped.length, (passed as { stopped: number }).stopped, 'the pass counts what it stopped')
})

t.test('updateWarmPool › concurrency › claims racing a pause: once the pause has answered, no claim takes from the pool', async (t) => {
  const app = await build(t, { ...slow, RATE_LIMIT_ENABLED: 'false' })
  const offer = await given(app).offer()
  const warm = 8
  for (let i = 0; i < warm; i++) await given(app).warmContainer(offer)
  const users = await Promise.all(Array.from({ length: 16 }, () => given(app).signedIn()))
  const headers = await as(app)
  const available = async () => (await app.db.selectFrom('container').select((eb) => eb.fn.countAll<string>().as('n'))
    .where('app_id', '=', offer.app).where('state', '=', 'available').where('user_id', 'is', null).executeTakeFirstOrThrow()).n

  const claims = users.map((u, i) => i < 8 ? assign(app, u.headers, offer) : null)
  const pausing = app.inject({ method: 'PATCH', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { paused: true }, headers })
  const late = users.slice(8).map((u) => assign(app, u.headers, offer))
  const paused = await pausing
  t.equal(paused.statusCode, 200)
  const leftAtPause = Number(await available())
  const answers = await Promise.all([...claims.filter((c) => c !== null), ...late])

  t.equal(Number(await available()), leftAtPause, 'no warm container left the pool after the pause answered')
  const fromPool = answers.filter((a) => a.statusCode === 201)
  t.equal(fromPool.length, warm - leftAtPause, 'every claimed one went to a claim answered 201')
  t.equal(new Set(fromPool.map((a) => a.json().id)).size, fromPool.length, 'each to one user')
  t.ok(answers.every((a) => a.statusCode === 201 || a.statusCode === 202), 'the others start a container')
  const after = await given(app).signedIn()
  t.equal((await assign(app, after.headers, offer)).statusCode, 202, 'a claim after the pause gets a new container')
})

t.test('updateWarmPool › concurrency › a pause waits for a claim in flight; no claim commits after the pause has answered', async (t) => {
  const app = await build(t, slow)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)
  const user = await given(app).user()
  const headers = await as(app)
  const waitingLocks = async () => (await sql<{ n: string }>`select count(*) as n from pg_locks
    where locktype = 'advisory' and not granted and database = (select oid from pg_database where datname = current_database())`.execute(app.db)).rows[0]!.n

  let pausing: Promise<LightMyRequestResponse> = Promise.reject(new Error('no pause sent'))
  pausing.catch(() => {})
  let answeredDuringClaim = false
  await app.db.transaction().execute(async (trx) => {
    // A claim in flight: the assignment's function has claimed a warm container; its transaction is still open.
    const { rows } = await sql<{ answer: { outcome: string } }>`select fractal_assign_container(${user.id}::uuid, ${randomUUID()}, 'hash', ${offer.app}, ${offer.region},
      null, 'aes', 'secret-hash', now() + interval '10 minutes', null, null, null) as answer`.execute(trx)
    t.equal(rows[0]!.answer.outcome, 'claimed')
    let settled = false
    pausing = app.inject({ method: 'PATCH', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { paused: true }, headers })
    pausing.then(() => { settled = true }, () => { settled = true })
    await until(async () => settled || Number(await waitingLocks()) > 0)
    answeredDuringClaim = settled
  })
  const paused = await pausing
  t.equal(paused.statusCode, 200)
  t.notOk(answeredDuringClaim, 'the pause did not answer while the claim was uncommitted')
  t.match(paused.json(), { paused: true, available: 1, inUse: 1 }, 'the pause answers with the claim counted')
})

t.test('warm-pools › valid › /metrics exports each pool\'s capacity as gauges', async (t) => {
  const app = await build(t, slow)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  await call(app, 'PUT', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { target: 3 })
  await call(app, 'PATCH', `/v1/admin/warm-pools/${offer.app}/${offer.region}`, { paused: true })
  await pass(app)

  const res = await app.inject({ method: 'GET', url: '/metrics', headers: { authorization: `Bearer ${slow.METRICS_TOKEN}` } })

  t.equal(res.statusCode, 200)
  const labels = `app="${offer.app}",region="${offer.region}"`
  t.match(res.body, `warm_pool_containers{${labels},state="available"} 1`)
  t.match(res.body, `warm_pool_containers{${labels},state="starting"} 0`)
  t.match(res.body, `warm_pool_containers{${labels},state="in_use"} 0`)
  t.match(res.body, `warm_pool_desired{${labels}} 3`)
  t.match(res.body, `warm_pool_paused{${labels}} 1`)
  t.match(res.body, new RegExp(`warm_pool_last_pass_timestamp_seconds\\{${labels}\\} \\d+`))
})
