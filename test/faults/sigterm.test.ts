// SIGTERM under load, to the processes an operator runs. server.ts: the requests in flight finish with
// their own status, new connections are refused (or answered 503), an open event stream is ended rather
// than holding the shutdown, and the process exits 0 within SHUTDOWN_GRACE_MS. worker.ts: a start job in
// progress is handed back (not lost, and not left for the stall check: QUEUE_STALL_INTERVAL_MS is a
// minute here), the worker exits 0, and the next worker finishes the job with the task already started.
import { randomBytes, randomUUID } from 'node:crypto'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import t from 'tap'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { startEcsStandIn } from '../helpers/ecs-http.js'
import { given } from '../helpers/given.js'
import { entryEnv, runEntry } from '../helpers/processes.js'
import { freePort } from '../helpers/redis-server.js'
import { until } from '../helpers/wait.js'

const graceMs = 5000

interface Answer { status: number | string, at: number, body: string }

/** One request on a connection of its own (no keep-alive pool): a refused connection is `ECONNREFUSED`. */
function send (port: number, method: string, path: string, options: { headers?: Record<string, string>, body?: object } = {}): Promise<Answer> {
  return new Promise((resolve) => {
    const payload = options.body ? JSON.stringify(options.body) : undefined
    const req = httpRequest({ host: '127.0.0.1', port, method, path, agent: false, headers: { ...options.headers, ...(payload ? { 'content-type': 'application/json' } : {}) } }, (res) => {
      let body = ''
      res.on('data', (d) => { body += d })
      res.on('end', () => resolve({ status: res.statusCode!, at: Date.now(), body }))
      res.on('error', (err: NodeJS.ErrnoException) => resolve({ status: err.code ?? err.message, at: Date.now(), body }))
    })
    req.on('error', (err: NodeJS.ErrnoException) => resolve({ status: err.code ?? err.message, at: Date.now(), body: '' }))
    req.end(payload)
  })
}

// Both processes boot at once (each takes seconds on a busy machine), and the two tests run side by side:
// each on a database and Redis prefix of its own (`site` for the server, `web` for the worker).
t.jobs = 2
const site = await build(t)
const web = await build(t)
const offer = await given(web).offer()
const cluster = await web.db.selectFrom('cluster').select('name').where('region_code', '=', offer.region).executeTakeFirstOrThrow()
const ecs = await startEcsStandIn({ pendingMs: 600_000 })
t.teardown(() => ecs.close())
ecs.addCluster(cluster.name)
const port = await freePort()
const server = runEntry(t, 'server.ts', entryEnv(site.config, { HOST: '127.0.0.1', PORT: String(port), SHUTDOWN_GRACE_MS: String(graceMs), RATE_LIMIT_ENABLED: 'false' }))
const workerEnv = entryEnv(web.config, {
  ...ecs.env,
  ...awsSettings,
  PUBLIC_URL: 'https://api.fractal.test',
  CONTAINER_POLL_MS: '50',
  // The job polls its provisioning task for a minute: longer than the grace period.
  CONTAINER_POLL_BUDGET_MS: '60000',
  SHUTDOWN_GRACE_MS: '3000',
  QUEUE_STALL_INTERVAL_MS: '60000'
})
const firstWorker = runEntry(t, 'worker.ts', workerEnv)

t.test('server › SIGTERM under load › in-flight requests finish, new ones are refused or 503, an event stream is ended, exit 0 within the grace period', async (t) => {
  t.ok(await server.waitFor(/Server listening/), 'the server listens')
  const user = await given(site).signedIn()
  // A start job nobody works on (no worker on this prefix): its event stream stays open until it is ended.
  const assigned = await site.inject({ method: 'POST', url: '/v1/containers', payload: { app: (await given(site).offer()).app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  const jobId = (assigned.json() as { job: { id: string } }).job.id
  let streamed = ''
  let streamEnded = false
  const stream = httpRequest({ host: '127.0.0.1', port, path: `/v1/jobs/${jobId}/events`, agent: false, headers: user.headers })
  stream.on('response', (res: IncomingMessage) => {
    res.on('data', (d) => { streamed += d })
    res.on('close', () => { streamEnded = true })
  })
  stream.on('error', () => { streamEnded = true })
  stream.end()
  t.ok(await until(() => /event: progress/.test(streamed)), 'the event stream is open')

  // Sign-ups hash a password (argon2): a few hundred milliseconds each, many at once.
  const signUps = Array.from({ length: 16 }, () => send(port, 'POST', '/v1/accounts', { body: { email: `sigterm-${randomBytes(4).toString('hex')}@example.test`, password: 'a-long-unusual-passphrase', name: 'In Flight' } }))
  const arrived = () => (server.output().match(/"url":"\/v1\/accounts"[^\n]*"msg":"incoming request"/g) ?? []).length
  t.ok(await until(() => arrived() === 16), 'the sign-ups reached the server')

  const signalledAt = Date.now()
  server.child.kill('SIGTERM')
  t.ok(await server.waitFor(/closing: finishing in-flight requests/), 'the server says it is closing')
  const late = await send(port, 'GET', '/v1/regions')
  t.ok(['ECONNREFUSED', 'ECONNRESET'].includes(String(late.status)) || late.status === 503, `a request after the signal is refused, reset or 503 (${late.status})`)

  const answers = await Promise.all(signUps)
  t.same(answers.map((a) => a.status), answers.map(() => 201), 'every sign-up in flight is answered 201')
  t.ok(answers.some((a) => a.at > signalledAt), 'some of them were answered after the signal')
  // close-with-grace exits 1 when the grace period runs out: 0 means everything closed within it.
  t.equal(await server.exited, 0, `the server exits 0, within the grace period (after ${Date.now() - signalledAt} ms)`)
  t.ok(streamEnded, 'the event stream was ended (the client resumes it elsewhere with Last-Event-ID)')
  const stored = await site.db.selectFrom('account').select('email').where('email', 'like', 'sigterm-%').execute()
  t.equal(stored.length, 16, 'every sign-up answered 201 is stored')
})

t.test('worker › SIGTERM with a start job in progress › the job is handed back, the worker exits 0, the next worker finishes it with the same task', async (t) => {
  t.ok(await firstWorker.waitFor(/worker started/), 'the worker runs')
  const user = await given(web).signedIn()
  const res = await web.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  const { job, container } = res.json() as { job: { id: string }, container: { id: string } }
  const readJob = () => web.db.selectFrom('job').selectAll().where('id', '=', job.id).executeTakeFirstOrThrow()
  t.ok(await until(() => ecs.polls(container.id) >= 2, 30_000), 'the job polls its provisioning task')

  const signalledAt = Date.now()
  firstWorker.child.kill('SIGTERM')
  t.equal(await firstWorker.exited, 0, `the worker exits 0, within its grace period (after ${Date.now() - signalledAt} ms)`)
  t.match(firstWorker.output(), new RegExp(`"job":"${job.id}"[^\\n]*"handedBack":true`), 'it handed the unfinished job back')
  t.match(await readJob(), { state: 'running' }, 'the job is not failed or lost')

  ecs.pendingMs = 0
  const secondWorker = runEntry(t, 'worker.ts', workerEnv)
  t.ok(await secondWorker.waitFor(/worker started/), 'the next worker runs')
  t.ok(await until(async () => (await readJob()).message === 'waiting for the container to report', 20_000), 'it continues the start at once')
  const [task] = ecs.tasksOf(container.id)
  const ping = await web.inject({ method: 'POST', url: `/v1/containers/${container.id}/ping`, payload: { available: false }, headers: { 'x-container-secret': task!.environment.FRACTAL_CONTAINER_SECRET! } })
  t.equal(ping.statusCode, 204, 'the container reports')
  t.ok(await until(async () => (await readJob()).state === 'succeeded'), 'the start job succeeds')
  t.equal(ecs.tasksOf(container.id).length, 1, 'with the task the first worker started')
  secondWorker.child.kill('SIGTERM')
  t.equal(await secondWorker.exited, 0, 'an idle worker exits 0 as well')
})
