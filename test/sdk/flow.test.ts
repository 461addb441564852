// The SDK against a listening app with its worker and real SMTP: the whole path of a client app, and jobs.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { createFractalClient, FractalJobError, unwrap, type JobEvent } from '../../sdk/src/index.js'
import { given } from '../helpers/given.js'
import { mailTo, startMailbox, tokenIn } from '../helpers/mailbox.js'
import { listening } from './server.js'

const mailbox = await startMailbox(t)
// The simulated task runs 300 ms after RunTask: long enough to see a job in progress.
const { app, baseUrl, calls } = await listening(t, { SMTP_URL: mailbox.url, SIMULATED_START_MS: '300' })
app.queue.startWorker(2)

/** A signed-in client of a new user, and an app offered in a region with a cluster. */
async function signedInClient (options: Partial<Parameters<typeof createFractalClient>[0]> = {}) {
  const user = await given(app).signedIn()
  const client = createFractalClient({ baseUrl, accessToken: user.accessToken, refreshToken: user.refreshToken, ...options })
  return { user, client, offer: await given(app).offer() }
}

async function startContainer (client: ReturnType<typeof createFractalClient>, offer: { app: string, region: string }) {
  const { data, response } = await client.POST('/v1/containers', { body: { app: offer.app, region: offer.region } })
  if (response.status !== 202 || !data || !('job' in data)) throw new Error(`expected a cold start, got ${response.status}`)
  return data
}

t.test('sdk › flow › sign up, verify from the mail, sign in, get a container, wait for it, connect, stop it', async (t) => {
  const email = `ada-${randomBytes(3).toString('hex')}@example.test`
  const password = 'correct-horse-battery-staple'
  const issued: string[] = []
  const client = createFractalClient({ baseUrl, onTokens: (pair) => { issued.push(pair.refreshToken) } })
  const offer = await given(app).offer()

  const signedUp = unwrap(await client.POST('/v1/accounts', { body: { email, password, name: 'Ada Lovelace' } }))
  t.same(signedUp, { email, message: `We sent a verification link to ${email}.` })
  const token = tokenIn(await mailTo(mailbox, email, 'Verify your email address'), '/verify-email')
  const verified = unwrap(await client.POST('/v1/accounts/verify-email', { body: { token } }))
  t.match(verified, { email, emailVerified: true })

  const pair = await client.signIn({ email, password })
  t.match(pair, { tokenType: 'Bearer', user: { email } })
  t.same(issued, [pair.refreshToken], 'onTokens got the pair')
  t.same(client.tokens(), { accessToken: pair.accessToken, refreshToken: pair.refreshToken })
  t.match(unwrap(await client.GET('/v1/users/me')), { email, emailVerified: true }, 'the bearer token is sent')

  const { job, container } = await startContainer(client, offer)
  t.match(container, { state: 'creating', connection: null, region: offer.region })
  const stored = await app.db.selectFrom('idempotency_record').select('key').where('user_id', '=', pair.user.id).execute()
  t.match(stored, [{ key: /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/ }], 'the SDK generated an Idempotency-Key (a UUID)')

  const done = await client.waitForJob(job.id, { timeoutMs: 15_000 })
  t.match(done, { id: job.id, kind: 'start_container', state: 'succeeded', progress: 100 })

  const running = unwrap(await client.GET('/v1/containers/{containerId}', { params: { path: { containerId: container.id } } }))
  t.match(running, { id: container.id, state: 'in_use', connection: null, connectable: true })
  // The connection details come with a grant (typed: ConnectionGrant).
  const grant = unwrap(await client.POST('/v1/containers/{containerId}/grants', { params: { path: { containerId: container.id } }, body: { lifetimeSeconds: 60 } }))
  t.match(grant, { containerId: container.id, token: String, connection: { ip: /^\d+\.\d+\.\d+\.\d+$/, aesKey: /^[0-9a-f]{32}$/ } })
  t.ok(Object.values(grant.connection.ports).every((p) => Number.isInteger(p) && p > 0), 'three host ports')

  const stopping = unwrap(await client.DELETE('/v1/containers/{containerId}', { params: { path: { containerId: container.id } } }))
  t.match(stopping, { kind: 'stop_container' })
  t.match(await client.waitForJob(stopping.id, { timeoutMs: 15_000 }), { state: 'succeeded' })
  t.match(unwrap(await client.GET('/v1/containers/{containerId}', { params: { path: { containerId: container.id } } })), { state: 'stopped' })
})

t.test('sdk › streamJob › progress events, then the terminal event, and the iteration ends', async (t) => {
  const { client, offer } = await signedInClient()
  const { job } = await startContainer(client, offer)

  const events: JobEvent[] = []
  for await (const event of client.streamJob(job.id)) events.push(event)

  t.ok(events.length >= 2, `${events.length} events`)
  t.ok(events.slice(0, -1).every((e) => e.event === 'progress'), 'progress first')
  t.match(events.at(-1), { event: 'succeeded', data: { id: job.id, state: 'succeeded', progress: 100 } })
  const ids = events.map((e) => Number(e.id))
  t.same(ids, [...ids].sort((a, b) => a - b), 'ids grow')
})

t.test('sdk › streamJob › a dropped connection resumes with Last-Event-ID: no event twice, none lost', async (t) => {
  const seen: Array<string | null> = []
  let dropped = false
  // The first event stream is cut right after its first event, as a proxy or a network change would.
  const fetch = async (request: Request) => {
    const response = await globalThis.fetch(request)
    if (!request.url.endsWith('/events')) return response
    seen.push(request.headers.get('last-event-id'))
    if (dropped) return response
    dropped = true
    const reader = response.body!.getReader()
    const decoder = new TextDecoder()
    let text = ''
    while (!text.includes('\n\n')) text += decoder.decode((await reader.read()).value, { stream: true })
    await reader.cancel()
    const first = text.slice(0, text.indexOf('\n\n') + 2)
    let sent = false
    return new Response(new ReadableStream({
      pull (controller) {
        if (sent) return controller.error(new TypeError('terminated'))
        sent = true
        controller.enqueue(new TextEncoder().encode(first))
      }
    }), { status: 200, headers: response.headers })
  }
  const { client, offer } = await signedInClient({ fetch })
  const { job } = await startContainer(client, offer)

  const events: JobEvent[] = []
  for await (const event of client.streamJob(job.id, { reconnectDelayMs: 20 })) events.push(event)

  t.equal(seen.length, 2, 'one reconnection')
  t.same(seen, [null, events[0]!.id], 'the reconnection sent the id of the last event received')
  const ids = events.map((e) => Number(e.id))
  t.ok(ids.every((id, i) => i === 0 || id > ids[i - 1]!), 'no event twice: ids only grow')
  t.equal(events.at(-1)!.event, 'succeeded', 'the stream went on to the end')
})

t.test('sdk › waitForJob › a cancelled job rejects with FractalJobError; a timeout with TimeoutError', async (t) => {
  const { client, offer } = await signedInClient()
  const slow = await startContainer(client, offer)
  await t.rejects(client.waitForJob(slow.job.id, { timeoutMs: 50 }), { name: 'TimeoutError' })

  const cancelled = unwrap(await client.POST('/v1/jobs/{jobId}/cancel', { params: { path: { jobId: slow.job.id } } }))
  t.equal(cancelled.state, 'cancelled')
  const err = await client.waitForJob(slow.job.id).catch((e: unknown) => e)
  t.ok(err instanceof FractalJobError)
  t.match(err, { code: 'cancelled', job: { id: slow.job.id, state: 'cancelled' } })
})

t.test('sdk › Idempotency-Key › a retry after a lost answer sends the same key and gets the first answer back', async (t) => {
  let posts = 0
  const keys: Array<string | null> = []
  // The first assignment reaches the server, but its answer is lost: a 503 with Retry-After comes back instead.
  const fetch = async (request: Request) => {
    const response = await globalThis.fetch(request)
    if (request.method !== 'POST' || !request.url.endsWith('/v1/containers')) return response
    keys.push(request.headers.get('idempotency-key'))
    if (posts++ > 0) return response
    await response.body?.cancel()
    return new Response(JSON.stringify({ type: 'about:blank', title: 'Service unavailable', status: 503, code: 'unavailable' }), { status: 503, headers: { 'content-type': 'application/problem+json', 'retry-after': '0' } })
  }
  const { client, offer, user } = await signedInClient({ fetch })

  const { container } = await startContainer(client, offer)

  t.equal(keys.length, 2, 'sent twice')
  t.ok(keys[0], 'with a key')
  t.equal(keys[1], keys[0], 'the same key both times')
  const rows = await app.db.selectFrom('container').select('id').where('user_id', '=', user.account.id).execute()
  t.same(rows, [{ id: container.id }], 'one container, not a 409 for a second one')
})

t.test('sdk › paginate › walks every page of the app catalog, one request per page', async (t) => {
  for (let i = 0; i < 5; i++) await given(app).app()
  const client = createFractalClient({ baseUrl })
  const expected = (await app.db.selectFrom('app').select('id').orderBy('id').execute()).map((r) => r.id)
  const before = calls.filter((c) => c === 'GET /v1/apps').length

  const ids: string[] = []
  for await (const item of client.paginate('/v1/apps', { params: { query: { limit: 2 } } })) ids.push(item.id)

  t.same(ids, expected, 'every app once, in order')
  t.equal(calls.filter((c) => c === 'GET /v1/apps').length - before, Math.ceil(expected.length / 2), 'a request per page of two')
  const pages = []
  for await (const page of client.pages('/v1/apps', { params: { query: { limit: 100 } } })) pages.push(page)
  t.equal(pages.length, 1)
  t.equal(pages[0]!.nextCursor, null)
})
