import { randomUUID } from 'node:crypto'
import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof fileApp>>

t.test('getContainer › valid › the owner reads it; its connection info only with a live grant', async (t) => {
  const app = await fileApp()
  const { user, container, warm } = await given(app).assignedContainer()
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: container.id, connection: null, connectable: true })
  const { token } = (await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/grants`, headers: user.headers })).json()
  const granted = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: { ...user.headers, 'x-connection-grant': token } })
  t.equal(granted.json().connection.aesKey, warm.aes_key)
})

t.test('getContainer › insufficient permissions › another user gets 404, no token 401', async (t) => {
  const app = await fileApp()
  const { container } = await given(app).assignedContainer()
  const stranger = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: stranger.headers })
  t.equal(res.statusCode, 404, 'not 403: existence is not revealed')
  t.notMatch(res.body, /aesKey|198\.51/)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${container.id}` })).statusCode, 401)
})

t.test('getContainer › invalid input › a malformed id is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers/nope', headers: user.headers })).statusCode, 400)
})

t.test('getContainer › non-existing › an unknown id is 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${randomUUID()}`, headers: user.headers })
  t.equal(res.json().code, 'not_found')
})

t.test('listContainers › valid › mine only, newest first, paginated', async (t) => {
  const app = await fileApp()
  const { user, container } = await given(app).assignedContainer()
  await given(app).assignedContainer()
  const res = await app.inject({ method: 'GET', url: '/v1/containers', query: { limit: '1' }, headers: user.headers })
  t.equal(res.statusCode, 200)
  t.same(res.json().items.map((c: { id: string }) => c.id), [container.id])
  t.equal(res.json().nextCursor, null)
})

t.test('listContainers › insufficient permissions › no token is 401', async (t) => {
  const app = await fileApp()
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers' })).statusCode, 401)
})

t.test('listContainers › invalid input › a bad limit or cursor is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers', query: { limit: '0' }, headers: user.headers })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers', query: { cursor: 'abcd' }, headers: user.headers })).json().code, 'bad_request')
})

t.test('stopContainer › valid › 202 with a job; the worker stops it; stopping again is a done job', async (t) => {
  const app = await fileApp()
  const { user, container } = await given(app).assignedContainer()
  const res = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}`, headers: user.headers })
  t.equal(res.statusCode, 202)
  t.equal(res.headers.location, `/v1/jobs/${res.json().id}`)
  app.queue.startWorker(1)
  let state = ''
  await until(async () => {
    state = (await app.db.selectFrom('container').select('state').where('id', '=', container.id).executeTakeFirstOrThrow()).state
    return state === 'stopped'
  })
  t.equal(state, 'stopped')
  const job = await app.inject({ method: 'GET', url: `/v1/jobs/${res.json().id}`, headers: user.headers })
  t.match(job.json(), { state: 'succeeded', progress: 100 })
  const again = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}`, headers: user.headers })
  t.match(again.json(), { state: 'succeeded' })
})

t.test('stopContainer › insufficient permissions › another user cannot stop it (404)', async (t) => {
  const app = await fileApp()
  const { container } = await given(app).assignedContainer()
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}`, headers: stranger.headers })).statusCode, 404)
  const row = await app.db.selectFrom('container').select('state').where('id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(row.state, 'in_use')
})

t.test('stopContainer › invalid input › a malformed id is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/containers/x', headers: user.headers })).statusCode, 400)
})

t.test('stopContainer › non-existing › 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${randomUUID()}`, headers: user.headers })).statusCode, 404)
})

async function startedJob (app: App) {
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const started = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  return { user, jobId: started.json().job.id as string }
}

t.test('getJob › valid › the owner (and an admin) read the job', async (t) => {
  const app = await fileApp()
  const { user, jobId } = await startedJob(app)
  t.match((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}`, headers: user.headers })).json(), { id: jobId, kind: 'start_container', state: 'queued' })
  const admin = await given(app).signedIn({ role: 'admin' })
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}`, headers: admin.headers })).statusCode, 200)
})

t.test('getJob › insufficient permissions › another user gets 404, no token 401', async (t) => {
  const app = await fileApp()
  const { jobId } = await startedJob(app)
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}`, headers: stranger.headers })).statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}` })).statusCode, 401)
})

t.test('getJob › invalid input › a malformed id is 400', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/jobs/x', headers: user.headers })).statusCode, 400)
})

t.test('getJob › non-existing › an unknown id is 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${randomUUID()}`, headers: user.headers })).json().code, 'not_found')
})

t.test('pingContainer › valid › the container with its secret records a ping', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const res = await app.inject({ method: 'POST', url: `/v1/containers/${warm.id}/ping`, payload: { available: true }, headers: { 'x-container-secret': warm.secret } })
  t.equal(res.statusCode, 204)
  const row = await app.db.selectFrom('container').select(['last_ping_at', 'state']).where('id', '=', warm.id).executeTakeFirstOrThrow()
  t.ok(row.last_ping_at)
  t.equal(row.state, 'available')
})

t.test('pingContainer › insufficient permissions › a wrong secret, another container\'s secret or a user token: 401, nothing changes', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const other = await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  for (const headers of [{}, { 'x-container-secret': 'x'.repeat(43) }, { 'x-container-secret': other.secret }, user.headers]) {
    const res = await app.inject({ method: 'POST', url: `/v1/containers/${warm.id}/ping`, payload: { available: false }, headers })
    t.equal(res.statusCode, 401)
  }
  const row = await app.db.selectFrom('container').select(['last_ping_at', 'state']).where('id', '=', warm.id).executeTakeFirstOrThrow()
  t.equal(row.last_ping_at, null)
  t.equal(row.state, 'available')
})

t.test('pingContainer › invalid input › a bad body is 400', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const bad = await app.inject({ method: 'POST', url: `/v1/containers/${warm.id}/ping`, payload: { available: 'yes' }, headers: { 'x-container-secret': warm.secret } })
  t.equal(bad.statusCode, 400)
})

t.test('pingContainer › non-existing › an unknown container is 401, like a wrong secret (no existence leak)', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const unknown = await app.inject({ method: 'POST', url: `/v1/containers/${randomUUID()}/ping`, payload: { available: true }, headers: { 'x-container-secret': warm.secret } })
  t.equal(unknown.statusCode, 401)
})

t.test('getProtocolInfo › valid › the container reads its settings with its secret', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}/protocol-info`, headers: { 'x-container-secret': warm.secret } })
  t.equal(res.statusCode, 200)
  t.match(res.json(), { containerId: warm.id, state: 'available', userId: null, dpi: 96, useStun: false })
})

t.test('getProtocolInfo › insufficient permissions › no secret, or a user token, is 401', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}/protocol-info` })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}/protocol-info`, headers: user.headers })).statusCode, 401)
})

t.test('getProtocolInfo › invalid input › a malformed id is 401 (the secret is checked first, and no container has that id)', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers/bad/protocol-info', headers: { 'x-container-secret': warm.secret } })).statusCode, 401)
})

t.test('getProtocolInfo › non-existing › an unknown container is 401 with any secret', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${randomUUID()}/protocol-info`, headers: { 'x-container-secret': warm.secret } })).statusCode, 401)
})
