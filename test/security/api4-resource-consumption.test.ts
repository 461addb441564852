// OWASP API4 (unrestricted resource consumption), walked from the spec where it can be: every operation has
// a rate limit or a stated reason not to; every authentication operation meets its limit with a 429
// problem+json and Retry-After; every operation taking a body refuses one over its limit (BODY_LIMIT or its
// own x-body-limit) with a 413 problem; every page size above its maximum is a 400. And at the socket, on a
// listening server: oversized headers get 431, an oversized chunked body 413, and a client that sends its
// headers and then stalls is cut off at the request timeout.
import { connect, type AddressInfo } from 'node:net'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'
import { credentialsFor, everyCredential, exampleBody, isProblem, operations, validRequest, type WalkedOperation } from './spec-walk.js'

/** Operations without `x-rate-limit`, each for a reason. A new operation needs a limit or a line here. */
const exempt: Record<string, string> = {}
const because = (reason: string, ids: string[]) => { for (const id of ids) exempt[id] = reason }
because('operators only (scopes admin, users:*, fleet:*, catalog:write): few trusted callers, every change audited', [
  'updateRegion', 'listUsers', 'updateUser', 'openQueueDashboard', 'listWarmPools', 'setWarmPoolTarget', 'listWarmPoolSchedules', 'listClusters',
  'createCluster', 'getCluster', 'updateCluster', 'deleteCluster', 'rollAmi', 'listHosts', 'getFleet', 'listLogs', 'setMaintenance',
  'listPartners', 'createPartner', 'listPartnerKeys', 'createPartnerKey', 'revokePartnerKey', 'listPersonalTokens', 'getAdminApp'])
because('a signed-in user\'s own reads and small writes: bounded by their own rows (paged), one indexed query each', [
  'signOut', 'getMe', 'deleteMe', 'listMySessions', 'revokeMySession', 'listContainers', 'getContainer', 'updateContainer',
  'stopContainer', 'getJob', 'cancelJob', 'listMyLogs', 'getLogContent', 'getSubscription', 'listStorageConnections', 'deleteStorageConnection',
  'listMyPersonalTokens'])
because('a job\'s event stream: one per job the caller owns, closed when the job ends', ['streamJobEvents'])
because('a container\'s event stream: capped per user by EVENT_STREAMS_PER_USER, closed when the container ends', ['streamContainerEvents'])
because('the caller is one of our own containers or hosts (its secret), calling on a fixed schedule', ['shutdownContainer', 'pingContainer', 'getProtocolInfo', 'hostHeartbeat'])
because('edge-cached public read (x-cache): answered by the CDN, and at the origin by the coalescing cache', ['getStatus', 'getJwks'])
because('Stripe\'s signed deliveries: refusing one would make Stripe retry it; forged ones stop at the signature check', ['stripeWebhook'])
because('Hasura asks on every GraphQL request: a limit here would throttle Hasura; the cost is one cached signature check', ['hasuraAuth'])
because('probes and scrapes of the platform (load balancer, Prometheus): constant work, no database query per call beyond a ping', ['getHealth', 'getReadiness', 'getMetrics'])

t.test('security › resource consumption › every operation declares x-rate-limit, or is exempt with a reason', async (t) => {
  const missing = operations.filter((op) => !op.rateLimit && !(op.operationId in exempt)).map((op) => op.operationId)
  t.same(missing, [], 'no operation without a limit or a reason')
  t.same(operations.filter((op) => op.rateLimit && op.operationId in exempt).map((op) => op.operationId), [], 'no stale exemption')
  t.same(Object.keys(exempt).filter((id) => !operations.some((op) => op.operationId === id)), [], 'no exemption of a removed operation')
  for (const op of operations.filter((o) => o.rateLimit)) {
    t.ok(op.statuses.has('429'), `${op.operationId} declares 429`)
    if (op.rateLimit!.failClosed) t.ok(op.statuses.has('503'), `${op.operationId} fails closed: it declares 503`)
  }
  t.ok(operations.filter((op) => op.rateLimit?.failClosed).length >= 7, 'the authentication operations fail closed')
})

const bodyLimit = 1024
const logMaxBytes = 4096
const requestTimeoutMs = 1000

/** Sends raw bytes to the server; resolves with what came back and when the socket closed. */
function raw (port: number, chunks: Array<string | Buffer>, waitMs: number): Promise<{ text: string, closedAfterMs: number | null }> {
  return new Promise((resolve) => {
    const started = Date.now()
    const socket = connect(port, '127.0.0.1')
    let text = ''
    let closedAfterMs: number | null = null
    socket.on('data', (d) => { text += d.toString('latin1') })
    socket.on('error', () => {})
    socket.on('close', () => { closedAfterMs = Date.now() - started; clearTimeout(timer); resolve({ text, closedAfterMs }) })
    const timer = setTimeout(() => { socket.destroy(); resolve({ text, closedAfterMs }) }, waitMs)
    socket.on('connect', () => { for (const c of chunks) socket.write(c) })
  })
}

t.test('security › resource consumption › limits, bodies, pages and sockets', async (t) => {
  const app = await build(t, { BODY_LIMIT: String(bodyLimit), LOG_MAX_BYTES: String(logMaxBytes), REQUEST_TIMEOUT_MS: String(requestTimeoutMs) })
  const sessions = async () => Number((await app.db.selectFrom('session').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

  t.test('authentication operations › rate limit › a burst meets 429 problem+json with Retry-After, and the handler does not run', async (t) => {
    const auth = operations.filter((op) => op.rateLimit?.failClosed)
    const user = await given(app).user()
    for (const op of auth) {
      const { max } = op.rateLimit!
      // A body each handler refuses on its merits (or accepts): the limiter counts before validation.
      const request = { ...validRequest(op), remoteAddress: `203.0.113.${auth.indexOf(op) + 1}` }
      for (let i = 0; i < max; i++) await app.inject(request)
      const res = await app.inject(op.operationId === 'signIn' ? { ...request, payload: JSON.stringify({ email: user.email, password: user.password }) } : request)
      t.equal(res.statusCode, 429, `${op.operationId}: request ${max + 1} within ${op.rateLimit!.timeWindow}`)
      t.ok(isProblem(res), `${op.operationId}: problem+json`)
      t.equal(res.json().code, 'rate_limited')
      t.ok(Number(res.headers['retry-after']) > 0, `${op.operationId}: Retry-After ${res.headers['retry-after']}`)
      const other = await app.inject({ ...request, remoteAddress: '203.0.113.200' })
      t.not(other.statusCode, 429, `${op.operationId}: another address is not limited`)
    }
    const userSessions = await app.db.selectFrom('session').select('id').where('account_id', '=', user.id).execute()
    t.same(userSessions, [], 'the right password after the limit opened no session')
  })

  t.test('every operation with a body › invalid input › a body over its limit is 413 problem+json (401 first without credentials)', async (t) => {
    const wrong: string[] = []
    const { held, values } = await everyCredential(app)
    const withBody = operations.filter((op) => op.body)
    t.ok(withBody.length > 25, `${withBody.length} operations take a body`)
    const limitOf = (op: WalkedOperation) => op.bodyLimit === undefined ? bodyLimit : typeof op.bodyLimit === 'number' ? op.bodyLimit : op.bodyLimit === 'logs.maxBytes' ? logMaxBytes : NaN
    for (const op of withBody) {
      const limit = limitOf(op)
      t.ok(Number.isInteger(limit), `${op.operationId}: its limit is known (${String(op.bodyLimit ?? 'BODY_LIMIT')})`)
      const { contentType } = exampleBody(op)!
      const filler = (size: number) => contentType === 'application/json' ? `{"x":"${'a'.repeat(size - 8)}"}` : 'a'.repeat(size)
      const anonymous = validRequest(op, values)
      const request = { ...anonymous, headers: { ...anonymous.headers, ...credentialsFor(op, held) } }
      const res = await app.inject({ ...request, payload: filler(limit + 1), remoteAddress: '198.51.100.99' })
      if (res.statusCode !== 413 || !isProblem(res) || res.json().code !== 'payload_too_large') wrong.push(`${op.operationId}: ${res.statusCode} ${res.body.slice(0, 100)}`)
      if (op.security.length === 0 || op.security.some((r) => Object.keys(r).length === 0)) continue
      // The host secret may travel in the body (the original agent's AuthToken): it is checked once the body is
      // parsed, so a body over the limit is refused first, and nothing of the operation's schema is said either way.
      if (op.security.some((r) => 'hostSecret' in r)) continue
      // Without a credential the answer is 401, and the body was never read (the connection is not reused).
      const stranger = await app.inject({ ...anonymous, payload: filler(limit + 1), remoteAddress: '198.51.100.97' })
      if (stranger.statusCode !== 401 || !isProblem(stranger)) wrong.push(`${op.operationId} without a credential: ${stranger.statusCode}`)
      if (!op.statuses.has('413')) wrong.push(`${op.operationId} does not declare 413`)
      if (limit > bodyLimit) {
        const within = await app.inject({ ...request, payload: filler(bodyLimit + 1), remoteAddress: '198.51.100.98' })
        t.not(within.statusCode, 413, `${op.operationId}: its own limit (${limit}) replaces BODY_LIMIT`)
      }
    }
    t.same(wrong, [], 'every body over its limit: 413 payload_too_large')
  })

  t.test('every paged operation › invalid input › a page size above its maximum is a 400 naming limit', async (t) => {
    const admin = await given(app).signedIn({ role: 'admin' })
    const f = partners(app)
    const key = (await f.withKey()).headers
    const paged = operations.filter((op) => op.params.some((p) => p.in === 'query' && p.name === 'limit'))
    t.ok(paged.length >= 10, `${paged.length} paged operations`)
    for (const op of paged) {
      const max = op.params.find((p) => p.name === 'limit')!.schema.maximum
      t.ok(Number.isInteger(max), `${op.operationId}: limit has a maximum`)
      const headers = op.security.some((r) => 'partnerKey' in r) ? key : op.secured ? admin.headers : {}
      const request = validRequest(op)
      const sep = request.url.includes('?') ? '&' : '?'
      for (const limit of [max + 1, 1e6, -1, 0]) {
        const res = await app.inject({ ...request, url: `${request.url}${sep}limit=${limit}`, headers: { ...request.headers, ...headers } })
        t.equal(res.statusCode, 400, `${op.operationId}?limit=${limit}`)
        t.match(res.json(), { code: 'validation_failed', errors: [{ field: '/query/limit' }] })
      }
      const ok = await app.inject({ ...request, url: `${request.url}${sep}limit=${max}`, headers: { ...request.headers, ...headers } })
      t.not(ok.statusCode, 400, `${op.operationId}?limit=${max} is accepted (${ok.statusCode})`)
    }
  })

  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo

  t.test('server › invalid input › headers over the maximum size get 431', async (t) => {
    const res = await raw(port, [`GET /v1/regions HTTP/1.1\r\nHost: localhost\r\nX-Padding: ${'a'.repeat(20_000)}\r\n\r\n`], 5000)
    t.match(res.text, /^HTTP\/1\.1 431 /, 'Request Header Fields Too Large')
    t.notMatch(res.text, /at .*\.js|node:internal/, 'no stack')
    t.match(res.text, /content-type: application\/problem\+json/i, 'a problem, as every other error')
    t.match(res.text, /x-content-type-options: nosniff/i, 'with the security headers')
    t.match(JSON.parse(res.text.slice(res.text.indexOf('\r\n\r\n') + 4)), { status: 431, code: 'bad_request', title: 'Request Header Fields Too Large' })
  })

  t.test('server › invalid input › bytes that are not HTTP get a 400 problem and the connection is closed', async (t) => {
    const res = await raw(port, ['NOT HTTP AT ALL\r\n\r\n'], 5000)
    t.match(res.text, /^HTTP\/1\.1 400 /)
    t.match(res.text, /content-type: application\/problem\+json/i)
    t.ok(res.closedAfterMs !== null, 'closed')
  })

  t.test('server › invalid input › a chunked body over BODY_LIMIT is 413, however it is sent', async (t) => {
    const chunk = `{"email":"${'a'.repeat(bodyLimit)}@example.test","password":"x"}`
    const res = await raw(port, [
      'POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n',
      `${chunk.length.toString(16)}\r\n${chunk}\r\n0\r\n\r\n`
    ], 5000)
    t.match(res.text, /^HTTP\/1\.1 413 /)
    t.match(res.text, /content-type: application\/problem\+json/i)
  })

  t.test('server › slow client › headers then a stalled body are cut off at the request timeout (408 or closed), and nothing runs', async (t) => {
    const before = await sessions()
    const user = await given(app).user()
    const body = JSON.stringify({ email: user.email, password: user.password })
    const res = await raw(port, [
      `POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n`,
      body.slice(0, 10)
    ], 15_000)
    t.ok(res.closedAfterMs !== null, `the server closed the connection (after ${res.closedAfterMs} ms)`)
    // REQUEST_TIMEOUT_MS, and the idle socket timeout of twice that: a few seconds, not the client's leisure.
    t.ok(res.closedAfterMs !== null && res.closedAfterMs < requestTimeoutMs * 2 + 3000, 'within the configured timeouts')
    t.ok(res.text === '' || /^HTTP\/1\.1 408 [^]*application\/problem\+json/i.test(res.text), `no answer but a 408 problem (${res.text.split('\r\n')[0] || 'none'})`)
    t.equal(await sessions(), before, 'the sign-in never ran')
    const after = await fetch(`http://127.0.0.1:${port}/healthz`)
    t.equal(after.status, 200, 'the server still answers others')
  })

  t.test('server › slow client › many stalled connections do not stop the server answering', async (t) => {
    const stalled = Array.from({ length: 50 }, () => raw(port, ['POST /v1/sessions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"em'], 15_000))
    const started = Date.now()
    const res = await fetch(`http://127.0.0.1:${port}/healthz`)
    t.equal(res.status, 200)
    t.ok(Date.now() - started < 2000, 'at once')
    const closed = await Promise.all(stalled)
    // Those the limiter answered at once (429) are closed at once too, not kept for the keep-alive timeout.
    const late = closed.filter((c) => c.closedAfterMs === null || c.closedAfterMs > requestTimeoutMs * 2 + 3000).map((c) => c.text.split('\r\n')[0] || 'no answer')
    t.same(late, [], 'every stalled connection was closed by the server within the timeouts')
    t.ok(closed.some((c) => /^HTTP\/1\.1 429 /.test(c.text)), 'some were answered 429 before their body came')
  })
})
