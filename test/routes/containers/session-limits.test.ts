// Issue 22, item 1: sessions end by themselves within their limits (max duration, disconnect and idle
// timeouts), after a warning, and stop counting usage; the user may extend within the plan's allowance.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { seedCatalog } from '../../../db/seed.js'
import { bearer, given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const minute = 60_000
// Short limits for the tests: 60 min max, 10 min disconnected, 5 min idle, warned 2 min ahead.
const limits = {
  SESSION_MAX_SECONDS: '3600',
  SESSION_DISCONNECT_TIMEOUT_SECONDS: '600',
  SESSION_IDLE_TIMEOUT_SECONDS: '300',
  SESSION_WARNING_SECONDS: '120',
  SESSION_MAX_EXTENSION_SECONDS: '1800'
}

async function setup (t: Parameters<typeof build>[0], overrides: Record<string, string> = {}) {
  const clock = new TestClock()
  const app = await build(t, { ...limits, ...overrides }, { clock })
  const held = await given(app).assignedContainer()
  return { app, clock, ...held }
}

const startOf = async (app: App, id: string) => (await rowOf(app, id)).assigned_at!.getTime()
const pass = (app: App) => app.schedules.runOnce('session-limits')
const rowOf = (app: App, id: string) => app.db.selectFrom('container').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const eventsOf = (app: App, id: string) => app.db.selectFrom('container_event').select(['kind', 'reason', 'to_state']).where('container_id', '=', id).where('kind', '<>', 'state').orderBy('id').execute()

/** The container pings as a real one would, with its own secret. */
function ping (app: App, warm: { id: string, secret: string }, body: Record<string, unknown>) {
  return app.inject({ method: 'POST', url: `/v1/containers/${warm.id}/ping`, headers: { 'x-container-secret': warm.secret }, payload: body })
}

t.test('session limits › a session with no client connected is warned, then ended past the disconnect timeout', async (t) => {
  const { app, clock, user, container } = await setup(t)
  clock.advance(7 * minute)
  t.same(await pass(app), { sessionsWarned: 0, sessionsEnded: 0, warningsWithdrawn: 0 }, 'three minutes before the timeout: nothing yet')
  clock.advance(2 * minute)
  t.match(await pass(app), { sessionsWarned: 1 })
  const warned = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })
  t.match(warned.json(), { state: 'in_use', endingReason: 'disconnected', endsAt: String })
  t.equal(Date.parse(warned.json().endsAt), await startOf(app, container.id) + 10 * minute, 'endsAt: the session start plus the timeout')
  t.match(await pass(app), { sessionsWarned: 0 }, 'warned once per deadline')

  clock.advance(2 * minute)
  t.match(await pass(app), { sessionsEnded: 1 })
  const ended = await rowOf(app, container.id)
  t.equal(ended.state, 'stopping')
  t.equal(ended.ending_reason, 'disconnected')
  t.same(await eventsOf(app, container.id), [
    { kind: 'session_warning', reason: 'disconnected', to_state: 'in_use' },
    { kind: 'session_ended', reason: 'disconnected', to_state: 'stopping' }
  ])
  const audit = await app.db.selectFrom('audit_event').select(['action', 'details']).where('target_id', '=', container.id).where('action', '=', 'container.session_ended').execute()
  t.match(audit, [{ action: 'container.session_ended', details: { reason: 'disconnected' } }])

  // The usual stop follows: the task stops, and usage counts up to the limit, not to when the job ran.
  app.queue.startWorker(1)
  t.ok(await until(async () => (await rowOf(app, container.id)).state === 'stopped'), 'stopped by the stop job')
  const usage = await app.db.selectFrom('usage_record').selectAll().where('container_id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(usage.ended_at.getTime(), ended.session_ended_at!.getTime())
  t.ok(usage.seconds <= 10 * 60 + 1, `usage stops at the limit (${usage.seconds} s)`)
  t.match(await pass(app), { sessionsEnded: 0 }, 'an ended session is not ended again')
})

t.test('session limits › a connected client without input is ended by the idle timeout; input keeps it alive', async (t) => {
  const { app, clock, warm, container } = await setup(t)
  t.equal((await ping(app, warm, { available: false, idleSeconds: 0 })).statusCode, 204)
  clock.advance(4 * minute)
  t.equal((await ping(app, warm, { available: false, idleSeconds: 240 })).statusCode, 204)
  t.match(await pass(app), { sessionsWarned: 1 }, 'one minute of idleness left: warned')
  t.match(await rowOf(app, container.id), { ending_reason: 'idle' })

  // Input arrives: the warning is withdrawn by the next pass.
  t.equal((await ping(app, warm, { available: false, idleSeconds: 1 })).statusCode, 204)
  t.match(await pass(app), { warningsWithdrawn: 1 })
  t.match(await rowOf(app, container.id), { ends_at: null, ending_reason: null, state: 'in_use' })

  clock.advance(5 * minute + 1000)
  t.equal((await ping(app, warm, { available: false, idleSeconds: 301 })).statusCode, 204)
  t.match(await pass(app), { sessionsEnded: 1 })
  t.match(await rowOf(app, container.id), { state: 'stopping', ending_reason: 'idle' })
})

t.test('session limits › a ping with input arriving at the boundary keeps the session; one without does not', async (t) => {
  const { app, clock, warm, container } = await setup(t)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  const connectedAt = (await rowOf(app, container.id)).last_input_at!.getTime()
  // Exactly at the idle deadline, the container reports input that happened just now.
  clock.advance(connectedAt + 5 * minute - clock.now())
  await ping(app, warm, { available: false, idleSeconds: 0 })
  t.match(await pass(app), { sessionsEnded: 0 }, 'the input at the boundary moves the deadline')
  t.equal((await rowOf(app, container.id)).state, 'in_use')

  // Exactly at the next deadline, a ping that reports no new input: the limit is reached.
  const lastInput = (await rowOf(app, container.id)).last_input_at!.getTime()
  clock.advance(lastInput + 5 * minute - clock.now())
  await ping(app, warm, { available: false, idleSeconds: 300 })
  t.match(await pass(app), { sessionsEnded: 1 })
  t.equal((await rowOf(app, container.id)).state, 'stopping')
})

t.test('session limits › a ping landing between the pass\'s read and its write wins; the next pass decides again', async (t) => {
  const { app, clock, warm, container } = await setup(t)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  clock.advance(6 * minute)
  // The row the pass would read is changed by a ping while it runs: its conditional write finds nothing.
  const stale = await rowOf(app, container.id)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  const written = await app.db.updateTable('container').set({ state: 'stopping' })
    .where('id', '=', container.id).where('last_input_at', '=', stale.last_input_at!).returning('id').execute()
  t.same(written, [], 'the stale read no longer matches')
  t.match(await pass(app), { sessionsEnded: 0 }, 'the fresh input keeps the session')
})

t.test('session limits › the maximum duration ends even an active session; plan and app limits override the defaults', async (t) => {
  const { app, clock, warm, container } = await setup(t)
  // The app sets a shorter maximum (30 min) than the default (60 min).
  await app.db.updateTable('app').set({ session_limits: JSON.stringify({ maxSessionSeconds: 1800 }) }).where('id', '=', container.app).execute()
  await pass(app)
  t.equal((await rowOf(app, container.id)).max_ends_at!.getTime(), await startOf(app, container.id) + 30 * minute, 'the app\'s maximum')
  for (let i = 0; i < 6; i++) {
    clock.advance(5 * minute)
    await ping(app, warm, { available: false, idleSeconds: 1 })
    await pass(app)
  }
  t.match(await rowOf(app, container.id), { state: 'stopping', ending_reason: 'max_duration' })
})

t.test('session limits › limits set to 0 in configuration and none in plan or app: the session is never ended', async (t) => {
  const { app, clock, container } = await setup(t, { SESSION_MAX_SECONDS: '0', SESSION_DISCONNECT_TIMEOUT_SECONDS: '0', SESSION_IDLE_TIMEOUT_SECONDS: '0' })
  clock.advance(48 * 60 * minute)
  t.same(await pass(app), { sessionsWarned: 0, sessionsEnded: 0, warningsWithdrawn: 0 })
  t.match(await rowOf(app, container.id), { state: 'in_use', max_ends_at: null })
})

t.test('extendContainerSession › valid › moves the maximum end within the allowance, withdraws its warning, is idempotent', async (t) => {
  const { app, clock, warm, user, container } = await setup(t)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  clock.advance(59 * minute)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  t.match(await pass(app), { sessionsWarned: 1 })
  const start = await startOf(app, container.id)
  const target = new Date(start + 80 * minute).toISOString()
  // An hour on: the user's access token from the start has expired (15 minutes) by the moved clock.
  const headers = bearer(await given(app).token({ sub: user.account.id, scopes: ['containers'] }))
  const res = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers, payload: { until: target } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: container.id, endsAt: null, endingReason: null, maxSessionEndsAt: target })
  const again = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers, payload: { until: target } })
  t.equal(again.statusCode, 200)
  t.equal(again.json().maxSessionEndsAt, target, 'the same request again: the same answer')
  const earlier = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers, payload: { until: new Date(start + 70 * minute).toISOString() } })
  t.equal(earlier.json().maxSessionEndsAt, target, 'never shortened')
  t.same((await eventsOf(app, container.id)).map((e) => e.kind), ['session_warning', 'session_extended'], 'one extension event')
  clock.advance(2 * minute)
  await ping(app, warm, { available: false, idleSeconds: 0 })
  t.match(await pass(app), { sessionsEnded: 0 }, 'past the old end: still running')
  const audit = await app.db.selectFrom('audit_event').select('actor_id').where('action', '=', 'container.session_extended').where('target_id', '=', container.id).execute()
  t.same(audit, [{ actor_id: user.account.id }])
})

t.test('extendContainerSession › invalid input › past the plan\'s allowance, or no allowance, is 422; a bad date is 400', async (t) => {
  const { app, user, container } = await setup(t)
  const start = await startOf(app, container.id)
  const far = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: user.headers, payload: { until: new Date(start + 91 * minute).toISOString() } })
  t.equal(far.statusCode, 422)
  t.match(far.json(), { code: 'unprocessable', title: 'Extension not allowed', errors: [{ field: '/body/until' }] })
  t.match(far.json().detail, new Date(start + 90 * minute).toISOString(), 'names the latest end allowed')
  await app.db.updateTable('app').set({ session_limits: JSON.stringify({ maxExtensionSeconds: 0 }) }).where('id', '=', container.app).execute()
  const none = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: user.headers, payload: { until: new Date(start + 61 * minute).toISOString() } })
  t.equal(none.statusCode, 422)
  const bad = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: user.headers, payload: { until: 'tomorrow' } })
  t.equal(bad.statusCode, 400)
  t.equal((await rowOf(app, container.id)).max_ends_at, null, 'nothing written')
})

t.test('session limits › the user\'s plan sets the limits: Starter allows no extension', async (t) => {
  const { app, user, container } = await setup(t)
  await seedCatalog(app.db)
  await app.db.insertInto('subscription').values({ user_id: user.account.id, stripe_subscription_id: `sub_${randomUUID()}`, plan_id: 'starter', status: 'active', trial_end: null, current_period_start: new Date(), current_period_end: null, past_due_since: null }).execute()
  await pass(app)
  t.equal((await rowOf(app, container.id)).max_ends_at!.getTime(), await startOf(app, container.id) + 4 * 60 * minute, 'Starter: four hours')
  const res = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: user.headers, payload: { until: new Date(Date.now() + 5 * 60 * minute).toISOString() } })
  t.equal(res.statusCode, 422)
  t.match(res.json(), { detail: 'Your plan does not allow extending a session.' })
})

t.test('extendContainerSession › invalid input › a stopped container holds no session (409)', async (t) => {
  const { app, user, container } = await setup(t)
  await app.db.updateTable('container').set({ state: 'stopped' }).where('id', '=', container.id).execute()
  const res = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: user.headers, payload: { until: new Date(Date.now() + 70 * minute).toISOString() } })
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'conflict')
})

t.test('extendContainerSession › insufficient permissions › another user gets 404, no token 401', async (t) => {
  const { app, container } = await setup(t)
  const stranger = await given(app).signedIn()
  const payload = { until: new Date(Date.now() + 70 * minute).toISOString() }
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, headers: stranger.headers, payload })).statusCode, 404)
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/extend`, payload })).statusCode, 401)
  t.equal((await rowOf(app, container.id)).max_ends_at, null)
})

t.test('extendContainerSession › non-existing › an unknown container is 404', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: `/v1/containers/${randomUUID()}/extend`, headers: user.headers, payload: { until: new Date().toISOString() } })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('listPlans › valid › each plan says its session limits', async (t) => {
  const app = await build(t)
  await seedCatalog(app.db)
  const res = await app.inject({ method: 'GET', url: '/v1/plans' })
  t.match(res.json().items.find((p: { id: string }) => p.id === 'pro'), { sessionLimits: { maxSessionSeconds: 43200, disconnectTimeoutSeconds: 1800, idleTimeoutSeconds: 3600, maxExtensionSeconds: 14400 } })
})
