import { once } from 'node:events'
import { createServer, type IncomingMessage, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { storageDepsOf } from '../../../routes/storage/feature.js'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

const secret = 'a-shared-agent-secret-0123456789'

/** A stand-in host agent on 127.0.0.1 recording what it receives; `answer` decides the status (or hangs). */
async function fakeAgent (t: { teardown (fn: () => unknown): void }, answer: (call: number) => number | 'hang') {
  const calls: Array<{ path: string, secret: string | undefined, body: Record<string, unknown> }> = []
  const server: Server = createServer(async (req: IncomingMessage, res) => {
    let raw = ''
    for await (const chunk of req) raw += chunk
    calls.push({ path: req.url ?? '', secret: req.headers['x-fractal-agent-secret'] as string | undefined, body: JSON.parse(raw || '{}') })
    const status = answer(calls.length)
    if (status === 'hang') return
    res.writeHead(status).end()
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => { server.closeAllConnections(); server.close() })
  return { port: (server.address() as AddressInfo).port, calls }
}

t.test('sendStartValues › valid › a container handed to a user: its host agent gets the start values with the shared secret', async (t) => {
  const agent = await fakeAgent(t, () => 200)
  const app = await build(t, { HOST_AGENT_SECRET: secret, HOST_AGENT_SCHEME: 'http', HOST_AGENT_PORT: String(agent.port) })
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  await app.db.updateTable('container').set({ host_ip: '127.0.0.1' }).where('id', '=', warm.id).execute()
  const user = await given(app).signedIn()
  app.queue.startWorker(1)

  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })

  t.equal(res.statusCode, 201)
  t.ok(await until(() => agent.calls.length === 1))
  t.same(agent.calls[0], { path: '/set_container_start_values', secret, body: { container_id: warm.id, user_id: user.account.id, host_port: 41000, dpi: 96 } })
})

t.test('sendStartValues › faults › an agent answering 503 then 200 is retried; one that hangs times out and is retried too', async (t) => {
  const agent = await fakeAgent(t, (n) => (n === 1 ? 503 : n === 2 ? 'hang' : 200))
  const app = await build(t, { HOST_AGENT_SECRET: secret, HOST_AGENT_SCHEME: 'http', HOST_AGENT_PORT: String(agent.port), HOST_AGENT_TIMEOUT_MS: '200' })
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  await app.db.updateTable('container').set({ host_ip: '127.0.0.1' }).where('id', '=', warm.id).execute()
  const user = await given(app).signedIn()
  app.queue.startWorker(1)
  await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.ok(await until(() => agent.calls.length >= 3, 15_000), 'a third call after a 503 and a timeout')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(agent.calls.length, 3, 'no call after the success')
})

t.test('sendStartValues › valid › without HOST_AGENT_SECRET nothing is called; with HOST_AGENT_ENABLED and no secret the app refuses to start', async (t) => {
  const agent = await fakeAgent(t, () => 200)
  const app = await build(t, { HOST_AGENT_SCHEME: 'http', HOST_AGENT_PORT: String(agent.port) })
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  app.queue.startWorker(1)
  t.equal((await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })).statusCode, 201)
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(agent.calls.length, 0)
  await t.rejects(build(t, { HOST_AGENT_ENABLED: 'true' }), /HOST_AGENT_SECRET is required/)
})

t.test('sendStartValues › valid › the user\'s connected cloud storage is mounted with a fresh token, and the container shows it', async (t) => {
  const agent = await fakeAgent(t, () => 200)
  const app = await build(t, { HOST_AGENT_SECRET: secret, HOST_AGENT_SCHEME: 'http', HOST_AGENT_PORT: String(agent.port), STORAGE_GOOGLE_DRIVE_CLIENT_ID: 'drive-client' })
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  await app.db.updateTable('container').set({ host_ip: '127.0.0.1' }).where('id', '=', warm.id).execute()
  const user = await given(app).signedIn()
  const { cipher } = await storageDepsOf(app)
  await app.db.insertInto('storage_connection').values({
    user_id: user.account.id,
    provider: 'google_drive',
    account_email: 'drive@example.test',
    key_id: cipher.keyId,
    access_token: cipher.encrypt('drive-access-token'),
    refresh_token: cipher.encrypt('drive-refresh-token'),
    expires_at: new Date(Date.now() + 3600_000)
  }).execute()
  app.queue.startWorker(1)

  await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })

  t.ok(await until(() => agent.calls.length === 2))
  t.same(agent.calls[1], { path: '/mount_cloud_storage', secret, body: { container_id: warm.id, host_port: 41000, provider: 'google_drive', access_token: 'drive-access-token' } })
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}`, headers: user.headers })).json().storage.length === 1))
  const read = await app.inject({ method: 'GET', url: `/v1/containers/${warm.id}`, headers: user.headers })
  t.same(read.json().storage, ['google_drive'])
  t.notMatch(read.body, /drive-access-token/, 'the token is never shown')
})
