import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const stateOf = async (app: App, id: string) => (await app.db.selectFrom('container').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state

t.test('updateContainer › valid › the owner changes STUN and DPI', async (t) => {
  const app = await fileApp()
  const { warm, user } = await given(app).assignedContainer()
  const res = await app.inject({ method: 'PATCH', url: `/v1/containers/${warm.id}`, payload: { useStun: true, dpi: 192 }, headers: user.headers })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { useStun: true, dpi: 192 })
  const info = await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}/protocol-info`, headers: { 'x-container-secret': warm.secret } })
  t.match(info.json(), { useStun: true, dpi: 192 }, 'the container sees it')
})

t.test('updateContainer › insufficient permissions › another user gets 404; no token 401', async (t) => {
  const app = await fileApp()
  const { warm } = await given(app).assignedContainer()
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/containers/${warm.id}`, payload: { dpi: 100 }, headers: stranger.headers })).statusCode, 404)
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/containers/${warm.id}`, payload: { dpi: 100 } })).statusCode, 401)
  t.equal((await app.db.selectFrom('container').select('dpi').where('id', '=', warm.id).executeTakeFirstOrThrow()).dpi, 96)
})

t.test('updateContainer › invalid input › out-of-range DPI, unknown fields, empty body', async (t) => {
  const app = await fileApp()
  const { warm, user } = await given(app).assignedContainer()
  for (const payload of [{ dpi: 10 }, { state: 'stopped' }, {}, { useStun: 'yes' }]) {
    t.equal((await app.inject({ method: 'PATCH', url: `/v1/containers/${warm.id}`, payload, headers: user.headers })).statusCode, 400, JSON.stringify(payload))
  }
})

t.test('updateContainer › non-existing › 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/containers/${randomUUID()}`, payload: { dpi: 100 }, headers: user.headers })).statusCode, 404)
})

t.test('cancelJob › valid › cancelling a start job stops its container; cancelling again returns it unchanged', async (t) => {
  const app = await build(t, { SIMULATED_START_MS: '0' })
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const started = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  const { job, container } = started.json()
  const res = await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel`, headers: user.headers })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: job.id, state: 'cancelled' })
  app.queue.startWorker(2)
  t.ok(await until(async () => (await stateOf(app, container.id)) === 'stopped'), 'the container ends stopped, not running')
  const again = await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel`, headers: user.headers })
  t.match(again.json(), { state: 'cancelled' })
})

t.test('cancelJob › insufficient permissions › another user gets 404 and nothing is cancelled', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const { job } = (await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })).json()
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel`, headers: stranger.headers })).statusCode, 404)
  t.equal((await app.db.selectFrom('job').select('state').where('id', '=', job.id).executeTakeFirstOrThrow()).state, 'queued')
})

t.test('cancelJob › invalid input › a malformed id is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'POST', url: '/v1/jobs/x/cancel', headers: user.headers })).statusCode, 400)
})

t.test('cancelJob › non-existing › 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'POST', url: `/v1/jobs/${randomUUID()}/cancel`, headers: user.headers })).json().code, 'not_found')
})

t.test('shutdownContainer › valid › the container asks to stop: 202 and it ends stopped', async (t) => {
  const app = await build(t)
  const { warm } = await given(app).assignedContainer()
  const res = await app.inject({ method: 'DELETE', url: `/v1/containers/${warm.id}/self`, headers: { 'x-container-secret': warm.secret } })
  t.equal(res.statusCode, 202)
  t.equal(res.json().kind, 'stop_container')
  app.queue.startWorker(1)
  t.ok(await until(async () => (await stateOf(app, warm.id)) === 'stopped'))
})

t.test('shutdownContainer › insufficient permissions › a user token or a wrong secret is 401, nothing stops', async (t) => {
  const app = await fileApp()
  const { warm, user } = await given(app).assignedContainer()
  for (const headers of [user.headers, { 'x-container-secret': 'y'.repeat(43) }]) {
    t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${warm.id}/self`, headers })).statusCode, 401)
  }
  t.equal(await stateOf(app, warm.id), 'in_use')
})

t.test('shutdownContainer › invalid input › a malformed id is 401 (the secret is checked first, and no container has that id)', async (t) => {
  const app = await fileApp()
  const { warm } = await given(app).assignedContainer()
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/containers/x/self', headers: { 'x-container-secret': warm.secret } })).statusCode, 401)
})

t.test('deleteMe › valid › deleting an account stops its containers before the row goes', async (t) => {
  const app = await build(t)
  const { warm, user } = await given(app).assignedContainer()
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/users/me', headers: user.headers })).statusCode, 204)
  app.queue.startWorker(2)
  t.ok(await until(async () => (await stateOf(app, warm.id)) === 'stopped'), 'the container is stopped')
  t.ok(await until(async () => !(await app.db.selectFrom('account').select('id').where('id', '=', user.account.id).executeTakeFirst())), 'the account row is gone')
})
