// AWS answering 500 InternalFailure and 400 ThrottlingException for a while, then recovering, or failing
// for good. A real worker process (worker.ts, CLOUD_PROVIDER=aws) with the real SDK v3 clients talks to
// ECS/EC2 played over HTTP (test/helpers/ecs-http.ts): the SDK's own retries (AWS_MAX_ATTEMPTS) and the
// start job's retries with backoff get a start through a bad patch with one task; a failure that lasts
// ends the job with a clear error, the container failed and its task stopped, and the user free to ask
// again. Whatever happens, the user reading the job or the container never gets a 500.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { startEcsStandIn } from '../helpers/ecs-http.js'
import { given } from '../helpers/given.js'
import { entryEnv, runEntry } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

const ecs = await startEcsStandIn()
t.teardown(() => ecs.close())
const web = await build(t)
const offer = await given(web).offer()
const cluster = await web.db.selectFrom('cluster').select('name').where('region_code', '=', offer.region).executeTakeFirstOrThrow()
ecs.addCluster(cluster.name)
// A web process of the same deployment whose starts must finish within 3 s (CONTAINER_START_TIMEOUT_MS).
const impatient = await build(t, { DATABASE_URL: web.config.db.url!, REDIS_PREFIX: web.config.redis.prefix, CONTAINER_START_TIMEOUT_MS: '3000' })
const worker = runEntry(t, 'worker.ts', entryEnv(web.config, {
  ...ecs.env,
  ...awsSettings,
  AWS_MAX_ATTEMPTS: '3',
  PUBLIC_URL: 'https://api.fractal.test',
  CONTAINER_POLL_MS: '50',
  CONTAINER_POLL_BUDGET_MS: '2000'
}))
t.ok(await worker.waitFor(/worker started/), 'the worker runs')

type App = typeof web

/** A user asks for a container and keeps reading its job and container, as a client would, until stopped. */
async function startWatched (app: App) {
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  const { job, container } = res.json() as { job: { id: string }, container: { id: string } }
  const seen = { statuses: new Set<number>(), messages: new Set<string>() }
  const watching = new AbortController()
  const watch = (async () => {
    while (!watching.signal.aborted) {
      const [j, c] = await Promise.all([
        app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers }),
        app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })
      ])
      seen.statuses.add(j.statusCode).add(c.statusCode)
      if (j.statusCode === 200) seen.messages.add(j.json().message)
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  })()
  const readJob = async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json()
  return {
    user,
    status: res.statusCode,
    job,
    container,
    seen,
    readJob,
    async stopWatching () { watching.abort(); await watch }
  }
}

t.test('assignContainer › faults › ECS answering 500 InternalFailure and ThrottlingException for a while: SDK and job retries get through, one task, the start succeeds', async (t) => {
  const calls = ecs.calls('RunTask')
  // Three SDK attempts fail (500, 500, throttled): the job backs off and tries again, whose third attempt
  // passes. DescribeTasks is throttled twice, which the SDK alone gets past.
  ecs.fail('RunTask', 'internal', 2)
  ecs.fail('RunTask', 'throttle', 3)
  ecs.fail('DescribeTasks', 'throttle', 2)
  const started = await startWatched(web)
  t.equal(started.status, 202, 'the start is accepted')

  t.ok(await until(async () => (await started.readJob()).message === 'waiting for the container to report', 30_000), 'the start gets through')
  t.equal(ecs.calls('RunTask') - calls, 6, 'six RunTask calls: three SDK attempts, a backoff, three more')
  t.ok([...started.seen.messages].some((m) => /^the cloud provider is busy \((InternalFailure|ThrottlingException)\); trying again in \d+ s$/.test(m)),
    'meanwhile the job says the cloud is busy and that it will try again')
  const tasks = ecs.tasksOf(started.container.id)
  t.equal(tasks.length, 1, 'exactly one task')

  const ping = await web.inject({ method: 'POST', url: `/v1/containers/${started.container.id}/ping`, payload: { available: false }, headers: { 'x-container-secret': tasks[0]!.environment.FRACTAL_CONTAINER_SECRET! } })
  t.equal(ping.statusCode, 204, 'the container reports')
  t.ok(await until(async () => (await started.readJob()).state === 'succeeded'), 'the start job succeeds')
  await started.stopWatching()
  t.same([...started.seen.statuses], [200], 'every read of the job and the container was a 200')
  const row = await web.db.selectFrom('container').select(['state', 'task_arn']).where('id', '=', started.container.id).executeTakeFirstOrThrow()
  t.same(row, { state: 'in_use', task_arn: tasks[0]!.taskArn }, 'the container is in use on that task')
})

t.test('assignContainer › faults › ECS failing until the deadline: start_timeout, the container failed, its task stopped, the user may ask again', async (t) => {
  // RunTask works; every DescribeTasks answers 500 from then on.
  ecs.failAlways('DescribeTasks', 'internal')
  t.teardown(() => ecs.heal('DescribeTasks'))
  const started = await startWatched(impatient)
  t.equal(started.status, 202, 'the start is accepted')

  t.ok(await until(async () => (await started.readJob()).state === 'failed', 30_000), 'the start job fails')
  await started.stopWatching()
  t.match(await started.readJob(), { state: 'failed', errorCode: 'start_timeout', message: 'the container did not start before the job deadline' }, 'the job says why')
  t.ok([...started.seen.messages].some((m) => /^the cloud provider is busy \(InternalFailure\)/.test(m)), 'it retried while it could')
  t.same([...started.seen.statuses], [200], 'every read of the job and the container was a 200')
  const row = await web.db.selectFrom('container').select(['state', 'failure_reason']).where('id', '=', started.container.id).executeTakeFirstOrThrow()
  t.same(row, { state: 'failed', failure_reason: 'the container did not start before the job deadline' }, 'the container is released as failed')
  const tasks = ecs.tasksOf(started.container.id)
  t.equal(tasks.length, 1, 'one task was started')
  t.equal(tasks[0]!.status, 'STOPPED', 'and it was stopped: nothing leaks')

  ecs.heal('DescribeTasks')
  const again = await web.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...started.user.headers, 'idempotency-key': randomUUID() } })
  t.equal(again.statusCode, 202, 'the user is not stuck with a half-started container: a new start begins')
  t.ok(await until(() => ecs.tasksOf(again.json().container.id).length === 1, 30_000), 'and gets its task once ECS is well again')
})

t.test('assignContainer › faults › ECS refusing RunTask for good (AccessDenied): start_failed at once with ECS\'s reason, no task', async (t) => {
  ecs.failAlways('RunTask', 'denied')
  t.teardown(() => ecs.heal('RunTask'))
  const started = await startWatched(web)
  t.equal(started.status, 202, 'the start is accepted')

  t.ok(await until(async () => (await started.readJob()).state === 'failed', 30_000), 'the start job fails')
  await started.stopWatching()
  t.match(await started.readJob(), { state: 'failed', errorCode: 'start_failed', message: /not authorized to perform: ecs:RunTask/ }, 'the job carries ECS\'s reason')
  t.equal(ecs.received('RunTask').filter((input) => input.startedBy === started.container.id).length, 1, 'a refusal is not retried')
  t.same([...started.seen.statuses], [200], 'every read of the job and the container was a 200')
  t.equal(ecs.tasksOf(started.container.id).length, 0, 'no task')
  const row = await web.db.selectFrom('container').select('state').where('id', '=', started.container.id).executeTakeFirstOrThrow()
  t.equal(row.state, 'failed', 'the container is released as failed')
})
