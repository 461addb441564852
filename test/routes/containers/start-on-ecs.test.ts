// Starting a container on ECS, end to end: the real app and its real ECS/EC2 SDK clients, the cloud played
// by a stateful model at the SDK boundary (test/helpers/ecs-model.ts). Nothing pings for us on AWS: the
// test acts as the container and pings with the secret it finds in the RunTask overrides.
import { randomBytes, randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import type { RunTaskCommandInput, StopTaskCommandInput } from '@aws-sdk/client-ecs'
import { awsSettings } from '../../helpers/aws.js'
import { build, type Overrides } from '../../helpers/build.js'
import { ecsModel, type EcsModel, type ModelTask } from '../../helpers/ecs-model.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const publicUrl = 'https://api.fractal.test'
const containerName = 'fractal-streamer'
const aws: Overrides = {
  ...awsSettings,
  CONTAINER_POLL_MS: '20',
  CONTAINER_POLL_BUDGET_MS: '200',
  PUBLIC_URL: publicUrl,
  ECS_CONTAINER_NAME: containerName
}

const assign = (app: App, headers: Record<string, string>, body: object) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': randomUUID() } })
const ping = (app: App, id: string, secret: string | undefined, available: boolean) =>
  app.inject({ method: 'POST', url: `/v1/containers/${id}/ping`, payload: { available }, headers: secret === undefined ? {} : { 'x-container-secret': secret } })

/** An app on "AWS" with one offer whose cluster the model knows, a signed-in user, and helpers to read what they see. */
async function onEcs (t: Test, overrides: Overrides = {}, model: EcsModel = ecsModel()) {
  // Restored after the app closed (teardowns run last-in first-out): no job ever reaches the real AWS.
  t.teardown(() => model.restore())
  const app = await build(t, { ...aws, ...overrides })
  const offer = await given(app).offer()
  const cluster = await app.db.selectFrom('cluster').selectAll().where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  model.addCluster(cluster.name)
  const user = await given(app).signedIn()
  const readJob = async (id: string) => (await app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: user.headers })).json()
  // Read as the client does: with a connection grant once it runs (the connection details come only with one).
  const readContainer = async (id: string) => {
    const grant = await app.inject({ method: 'POST', url: `/v1/containers/${id}/grants`, headers: user.headers })
    const withGrant = grant.statusCode === 201 ? { 'x-connection-grant': grant.json().token as string } : {}
    return (await app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: { ...user.headers, ...withGrant } })).json()
  }
  const row = (id: string) => app.db.selectFrom('container').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  /** Asks for a container with an empty pool: 202, and the worker starts it. */
  const start = async (body: object = {}) => {
    const res = await assign(app, user.headers, { app: offer.app, ...body })
    t.equal(res.statusCode, 202, 'the pool is empty: the container starts')
    app.queue.startWorker(2)
    return res.json() as { job: { id: string }, container: { id: string } }
  }
  /** Until the task runs and the job waits for the container's first ping. */
  const untilWaitingForPing = (jobId: string) => until(async () => (await readJob(jobId)).message === 'waiting for the container to report')
  return { app, model, offer, cluster, user, readJob, readContainer, row, start, untilWaitingForPing }
}

const onlyTaskOf = (t: Test, model: EcsModel, containerId: string): ModelTask => {
  const tasks = model.tasksOf(containerId)
  t.equal(tasks.length, 1, 'exactly one task for the container')
  return tasks[0]!
}

t.test('assignContainer › valid › on ECS: RunTask with the cluster, capacity provider and overrides; the first ping makes it in_use', async (t) => {
  const { app, model, offer, cluster, user, readJob, readContainer, start, untilWaitingForPing } = await onEcs(t)
  const offered = await app.db.selectFrom('app_region').selectAll().where('app_id', '=', offer.app).where('region_code', '=', offer.region).executeTakeFirstOrThrow()

  const { job, container } = await start({ dpi: 144 })

  t.ok(await untilWaitingForPing(job.id), 'the job waits for the container to report')
  t.match(await readJob(job.id), { state: 'running', message: 'waiting for the container to report' })
  t.match(await readContainer(container.id), { state: 'starting', connection: null }, 'no connection before the container reports')

  const sent = model.received<RunTaskCommandInput>('RunTask')
  t.equal(sent.length, 1, 'one RunTask')
  t.match(sent[0], {
    cluster: cluster.name,
    taskDefinition: offered.task_definition,
    startedBy: container.id,
    capacityProviderStrategy: [{ capacityProvider: cluster.capacity_provider }],
    overrides: { containerOverrides: [{ name: containerName }] }
  })
  const task = onlyTaskOf(t, model, container.id)
  t.equal(task.region, offer.region, 'sent to the region\'s ECS endpoint')
  t.equal(task.status, 'RUNNING')
  const env = model.environmentOf(task)
  t.match(env, { FRACTAL_CONTAINER_ID: container.id, FRACTAL_CALLBACK_URL: publicUrl, FRACTAL_DPI: '144', FRACTAL_AES_KEY: /^[0-9a-f]{32}$/, FRACTAL_CONTAINER_SECRET: /^[A-Za-z0-9_-]{32,}$/ })

  // The container comes up and reports: a user is connected (available: false).
  t.equal((await ping(app, container.id, env.FRACTAL_CONTAINER_SECRET, false)).statusCode, 204)

  t.ok(await until(async () => (await readJob(job.id)).state === 'succeeded'), 'the start job succeeds')
  t.match(await readContainer(container.id), {
    state: 'in_use',
    connection: { ip: task.instance.publicIp, ports: task.hostPorts, aesKey: env.FRACTAL_AES_KEY }
  })
  const events = await app.db.selectFrom('container_event').select(['from_state', 'to_state']).where('container_id', '=', container.id).orderBy('id').execute()
  t.same(events, [{ from_state: null, to_state: 'creating' }, { from_state: 'creating', to_state: 'starting' }, { from_state: 'starting', to_state: 'in_use' }])
  const logon = await app.db.selectFrom('container_session').selectAll().where('container_id', '=', container.id).execute()
  t.match(logon, [{ user_id: user.account.id, logoff_at: null }], 'the connected user is logged on')

  // The user leaves: the container is available again.
  t.equal((await ping(app, container.id, env.FRACTAL_CONTAINER_SECRET, true)).statusCode, 204)
  const logoff = await app.db.selectFrom('container_session').selectAll().where('container_id', '=', container.id).execute()
  t.equal(logoff.length, 1)
  t.ok(logoff[0]!.logoff_at, 'the session is closed')
  t.equal(model.calls('StopTask'), 0, 'nothing was stopped')
})

t.test('assignContainer › faults › RunTask throttled twice and DescribeTasks once: retried, still one task, and it starts', async (t) => {
  const model = ecsModel()
  model.throttle('RunTask', 2)
  model.throttle('DescribeTasks', 1)
  const { app, readJob, readContainer, row, start, untilWaitingForPing } = await onEcs(t, {}, model)

  const { job, container } = await start()

  t.ok(await untilWaitingForPing(job.id), 'the start gets past the throttling')
  t.equal(model.calls('RunTask'), 3, 'two throttled RunTask, then one that placed the task')
  t.ok(model.calls('DescribeTasks') >= 2, 'the throttled DescribeTasks was asked again')
  const task = onlyTaskOf(t, model, container.id)
  t.equal((await row(container.id)).task_arn, task.taskArn)

  await ping(app, container.id, model.environmentOf(task).FRACTAL_CONTAINER_SECRET, true)
  t.ok(await until(async () => (await readJob(job.id)).state === 'succeeded'))
  t.match(await readContainer(container.id), { state: 'in_use', connection: { ip: task.instance.publicIp } })
  t.equal(model.tasks.length, 1, 'no second task anywhere')
})

t.test('assignContainer › faults › DescribeTasks answering 500 three times: retried, and the start succeeds', async (t) => {
  const model = ecsModel()
  model.serverError('DescribeTasks', 3)
  const { app, readJob, readContainer, start, untilWaitingForPing } = await onEcs(t, {}, model)

  const { job, container } = await start()

  t.ok(await untilWaitingForPing(job.id))
  t.ok(model.calls('DescribeTasks') >= 4, 'three 500s, then an answer')
  const task = onlyTaskOf(t, model, container.id)
  await ping(app, container.id, model.environmentOf(task).FRACTAL_CONTAINER_SECRET, true)
  t.ok(await until(async () => (await readJob(job.id)).state === 'succeeded'))
  t.match(await readContainer(container.id), { state: 'in_use', connection: { ip: task.instance.publicIp, ports: task.hostPorts } })
})

t.test('assignContainer › faults › the task stops while starting (image not found): task_stopped, the reason shown', async (t) => {
  const model = ecsModel()
  const reason = 'CannotPullContainerError: pull image manifest has been retried 5 time(s): fractal/chrome:missing not found'
  model.stopWhileStarting(reason)
  const { readJob, readContainer, row, start } = await onEcs(t, {}, model)

  const { job, container } = await start()

  t.ok(await until(async () => (await readJob(job.id)).state === 'failed'), 'the start job fails')
  const failed = await readJob(job.id)
  t.match(failed, { state: 'failed', errorCode: 'task_stopped' })
  t.ok(failed.message.includes(reason), 'the job says why')
  const shown = await readContainer(container.id)
  t.match(shown, { state: 'failed', connection: null })
  t.ok(shown.failureReason.includes(reason), 'the owner sees why ECS stopped it')
  const task = onlyTaskOf(t, model, container.id)
  t.equal(task.status, 'STOPPED')
  t.equal((await row(container.id)).host_ip, null, 'no address recorded for a task that never ran')
})

t.test('assignContainer › faults › the worker loses the RunTask answer: the retry finds the task by startedBy, no second task', async (t) => {
  const model = ecsModel()
  model.crashAfterRunTask(1)
  const { app, readJob, row, start, untilWaitingForPing } = await onEcs(t, {}, model)

  const { job, container } = await start()

  t.ok(await untilWaitingForPing(job.id), 'the retried job picks the task up')
  const task = onlyTaskOf(t, model, container.id)
  t.equal(model.calls('RunTask'), 1, 'RunTask was not sent again')
  t.equal((await row(container.id)).task_arn, task.taskArn, 'the container records the task that was started')

  await ping(app, container.id, model.environmentOf(task).FRACTAL_CONTAINER_SECRET, true)
  t.ok(await until(async () => (await readJob(job.id)).state === 'succeeded'))
  t.equal(model.tasks.filter((x) => x.status !== 'STOPPED').length, 1)
})

t.test('assignContainer › faults › no first ping after RUNNING: no_first_ping, the task is stopped, the container failed', async (t) => {
  const { model, readJob, readContainer, start } = await onEcs(t, { CONTAINER_FIRST_PING_TIMEOUT_MS: '300' })

  const { job, container } = await start()

  t.ok(await until(async () => (await readJob(job.id)).state === 'failed'))
  t.match(await readJob(job.id), { state: 'failed', errorCode: 'no_first_ping' })
  t.match(await readContainer(container.id), { state: 'failed', failureReason: /did not report/, connection: null })
  const task = onlyTaskOf(t, model, container.id)
  t.equal(task.status, 'STOPPED', 'the silent task does not run on')
  t.match(model.received<StopTaskCommandInput>('StopTask'), [{ task: task.taskArn }])
})

t.test('assignContainer › faults › the task exits after RUNNING, before its first ping: task_stopped with ECS\'s reason', async (t) => {
  // A first-ping timeout long enough that only noticing the stopped task can end the start within it.
  const { model, readJob, readContainer, start, untilWaitingForPing } = await onEcs(t, { CONTAINER_FIRST_PING_TIMEOUT_MS: '3000' })

  const { job, container } = await start()
  t.ok(await untilWaitingForPing(job.id))
  const task = onlyTaskOf(t, model, container.id)
  const reason = 'Essential container in task exited (exit code 139)'
  model.exit(task, reason)

  t.ok(await until(async () => (await readJob(job.id)).state === 'failed', 6000))
  t.match(await readJob(job.id), { state: 'failed', errorCode: 'task_stopped' }, 'the start fails because the task stopped, not for want of a ping')
  t.match(await readContainer(container.id), { state: 'failed', failureReason: /exit code 139/ }, 'the owner sees why ECS stopped it')
})

t.test('assignContainer › faults › no cluster of the region has room: no_capacity, nothing sent to ECS', async (t) => {
  const { app, model, offer, readJob, readContainer, start } = await onEcs(t)
  await app.db.updateTable('cluster').set({ capacity: 0 }).where('region_code', '=', offer.region).execute()

  const { job, container } = await start()

  t.ok(await until(async () => (await readJob(job.id)).state === 'failed'))
  t.match(await readJob(job.id), { state: 'failed', errorCode: 'no_capacity' })
  t.match(await readContainer(container.id), { state: 'failed', failureReason: /room/ })
  t.equal(model.calls('RunTask'), 0)
  t.equal(model.tasks.length, 0)
})

t.test('pingContainer › insufficient permissions › a starting container pinged with a wrong secret: 401 problem, the start does not complete', async (t) => {
  const { app, model, readJob, readContainer, row, start, untilWaitingForPing } = await onEcs(t)

  const { job, container } = await start()
  t.ok(await untilWaitingForPing(job.id))

  for (const secret of [randomBytes(32).toString('base64url'), undefined]) {
    const res = await ping(app, container.id, secret, false)
    t.equal(res.statusCode, 401)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'unauthorized')
  }
  t.equal((await row(container.id)).last_ping_at, null, 'no ping recorded')
  t.equal((await app.db.selectFrom('container_session').selectAll().where('container_id', '=', container.id).execute()).length, 0, 'nobody logged on')
  t.not((await readJob(job.id)).state, 'succeeded')
  t.match(await readContainer(container.id), { state: 'starting', connection: null })

  // The real container, with the secret it was started with, is let in.
  const task = onlyTaskOf(t, model, container.id)
  t.equal((await ping(app, container.id, model.environmentOf(task).FRACTAL_CONTAINER_SECRET, true)).statusCode, 204)
  t.ok(await until(async () => (await readJob(job.id)).state === 'succeeded'))
})

t.test('assignContainer › faults › a permanent ECS error (the cluster does not exist): start_failed at once, no retries', async (t) => {
  // The model knows no cluster at all: ECS answers ClusterNotFoundException.
  const model = ecsModel()
  t.teardown(() => model.restore())
  const app = await build(t, aws)
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app })
  t.equal(res.statusCode, 202)
  const { job, container } = res.json()
  app.queue.startWorker(2)
  const readJob = async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json()

  t.ok(await until(async () => (await readJob()).state === 'failed'))
  t.match(await readJob(), { state: 'failed', errorCode: 'start_failed', message: /Cluster not found/ })
  const shown = (await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })).json()
  t.match(shown, { state: 'failed', failureReason: /Cluster not found/ })
  const sent = () => model.calls('ListTasks') + model.calls('RunTask') + model.calls('DescribeTasks')
  const before = sent()
  t.ok(before <= 2, `asked ECS once (${before} calls)`)
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(sent(), before, 'and not again')
  t.equal(model.tasks.length, 0)
})

t.test('assignContainer › valid › polling cost (issue 19): a host\'s address is looked up once, then each poll is one DescribeTasks; the next start on that host looks up nothing', async (t) => {
  const model = ecsModel({ pendingPolls: 3 })
  const { app, offer, readJob, start, untilWaitingForPing } = await onEcs(t, {}, model)

  const first = await start()
  t.ok(await untilWaitingForPing(first.job.id))
  // Several polls while the container does not report yet.
  const polled = model.calls('DescribeTasks')
  t.ok(await until(() => model.calls('DescribeTasks') >= polled + 5), 'the job keeps watching the task')
  t.equal(model.calls('DescribeContainerInstances'), 1, 'one DescribeContainerInstances for the whole start')
  t.equal(model.calls('DescribeInstances'), 1, 'one EC2 DescribeInstances for the whole start')
  await ping(app, first.container.id, model.environmentOf(onlyTaskOf(t, model, first.container.id)).FRACTAL_CONTAINER_SECRET, true)
  t.ok(await until(async () => (await readJob(first.job.id)).state === 'succeeded'))

  // Another user (one container per user and app), on the cluster's one host.
  const other = await given(app).signedIn()
  const second = (await assign(app, other.headers, { app: offer.app })).json() as { job: { id: string }, container: { id: string } }
  const secondJob = () => app.db.selectFrom('job').select(['state', 'message']).where('id', '=', second.job.id).executeTakeFirstOrThrow()
  t.ok(await until(async () => (await secondJob()).message === 'waiting for the container to report'))
  await ping(app, second.container.id, model.environmentOf(onlyTaskOf(t, model, second.container.id)).FRACTAL_CONTAINER_SECRET, true)
  t.ok(await until(async () => (await secondJob()).state === 'succeeded'))
  t.equal(model.calls('DescribeContainerInstances') + model.calls('DescribeInstances'), 2, 'the same host: its address was known')
})

t.test('assignContainer › faults › the task stops with an empty stoppedReason: the job says ECS gave no reason, not "…starting: " (issue 19)', async (t) => {
  const model = ecsModel()
  model.stopWhileStarting('')
  const { readJob, start } = await onEcs(t, {}, model)

  const { job } = await start()

  t.ok(await until(async () => (await readJob(job.id)).state === 'failed'))
  t.match(await readJob(job.id), { errorCode: 'task_stopped', message: 'the task stopped while starting: ECS gave no reason (the task is stopped, stop code TaskFailedToStart)' })
})
