// The queue dashboard (bull-arena at /admin/queues) and the operation that opens it in a browser.
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const adminToken = (app: App) => given(app).token({ role: 'admin', scopes: ['admin'] })
const openSession = (app: App, token: string) => app.inject({ method: 'POST', url: '/v1/admin/queue-dashboard/session', headers: bearer(token) })
const cookieOf = (res: { headers: Record<string, unknown> }) => String(res.headers['set-cookie']).split(';')[0]!

/** The dashboard is Express behind a hijacked reply: asked over a real socket, as a browser does. */
async function page (app: App, path: string, headers: Record<string, string> = {}, init: RequestInit = {}) {
  if (!app.server.listening) await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { redirect: 'manual', ...init, headers: { ...headers, ...init.headers as Record<string, string> }, signal: AbortSignal.timeout(10_000) })
  const body = await res.text()
  return { statusCode: res.status, headers: Object.fromEntries(res.headers), body, json: () => JSON.parse(body) }
}

t.test('openQueueDashboard › valid › an admin gets an HttpOnly cookie for /admin/queues; the dashboard then lists our queues', async (t) => {
  const app = await fileApp()
  const res = await openSession(app, await adminToken(app))
  t.equal(res.statusCode, 201)
  t.equal(res.json().url, '/admin/queues')
  t.ok(Date.parse(res.json().expiresAt) > Date.now(), 'ends with the token')
  const setCookie = String(res.headers['set-cookie'])
  t.match(setCookie, /^fractal_queues=[\w.-]+; Path=\/admin\/queues; HttpOnly; SameSite=Strict; Max-Age=\d+$/)
  const maxAge = Number(/Max-Age=(\d+)/.exec(setCookie)![1])
  t.ok(maxAge > 0 && maxAge <= Math.ceil((Date.parse(res.json().expiresAt) - Date.now()) / 1000) + 1, 'no longer than the access token')

  const redirect = await page(app, '/admin/queues', { cookie: cookieOf(res) })
  t.equal(redirect.headers.location, '/admin/queues/')
  const overview = await page(app, '/admin/queues/', { cookie: cookieOf(res) })
  t.equal(overview.statusCode, 200)
  t.match(overview.headers['content-type'], /text\/html/)
  for (const queue of ['containers', 'fleet', 'mail', 'cache-purge']) t.match(overview.body, queue, `lists ${queue}`)
  const queue = await page(app, '/admin/queues/fractal/containers', { cookie: cookieOf(res) })
  t.equal(queue.statusCode, 200, 'a queue\'s page (with Redis INFO) renders')
})

t.test('openQueueDashboard › valid › a failed job is visible in its queue, with its error', async (t) => {
  const app = await build(t)
  app.queue.define({ family: 'mail', name: 'alwaysFails', handle: async () => { throw new Error('SMTP said no') } })
  await app.queue.enqueue({ family: 'mail', name: 'alwaysFails' }, { to: 'x@example.test' }, { jobId: 'fails-once', retries: 0 })
  app.queue.startWorker(1)
  t.ok(await until(async () => (await app.queue.counts('mail')).failed >= 1), 'the job failed')
  const failed = await page(app, '/admin/queues/fractal/mail/failed', bearer(await adminToken(app)))
  t.equal(failed.statusCode, 200)
  t.match(failed.body, 'fails-once', 'the failed job is listed')
})

t.test('openQueueDashboard › insufficient permissions › no token is 401, a user token 403; the dashboard likewise, as problem+json', async (t) => {
  const app = await fileApp()
  const user = await given(app).token({ scopes: ['account', 'containers'] })
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/queue-dashboard/session' })).statusCode, 401)
  const forbidden = await openSession(app, user)
  t.equal(forbidden.statusCode, 403)
  t.notOk(forbidden.headers['set-cookie'], 'no cookie for a non-admin')

  const anonymous = await page(app, '/admin/queues')
  t.equal(anonymous.statusCode, 401)
  t.match(anonymous.headers['content-type'], /application\/problem\+json/)
  t.match(anonymous.json().detail, /POST \/v1\/admin\/queue-dashboard\/session/, 'says how to get in')
  const asUser = await page(app, '/admin/queues', { cookie: `fractal_queues=${user}` })
  t.equal(asUser.statusCode, 403)
  const action = await page(app, '/admin/queues/api/queue/fractal/mail/job/bulk', bearer(user), { method: 'POST', body: JSON.stringify({ action: 'remove', jobs: [] }), headers: { 'content-type': 'application/json' } })
  t.equal(action.statusCode, 403, 'actions too')
})

t.test('openQueueDashboard › invalid input › a forged, expired or signed-out cookie is 401', async (t) => {
  const app = await fileApp()
  const forged = await page(app, '/admin/queues', { cookie: 'fractal_queues=eyJhbGciOiJub25lIn0.e30.' })
  t.equal(forged.statusCode, 401)
  const admin = await given(app).signedIn({ role: 'admin' })
  const session = await openSession(app, admin.accessToken)
  t.equal(session.statusCode, 201)
  await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: admin.headers })
  const after = await page(app, '/admin/queues', { cookie: cookieOf(session) })
  t.equal(after.statusCode, 401, 'signing out ends the dashboard session too')
})

t.test('openQueueDashboard › non-existing › without Redis (queues in process) the dashboard is 503 and says why', async (t) => {
  const app = await build(t, { REDIS_URL: '' })
  const res = await page(app, '/admin/queues', bearer(await adminToken(app)))
  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'unavailable', detail: /no REDIS_URL/ })
  t.ok(res.headers['retry-after'])
})
