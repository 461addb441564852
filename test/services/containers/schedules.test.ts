// The worker's container schedules, run one pass at a time through app.schedules.runOnce (under its Redis
// lock): warm-pool refill, reaping silent containers and stuck or stalled starts, stopping orphan tasks.
// The simulated cloud is enough for most; the ECS model (test/helpers/ecs-model.ts) shows what is stopped.
import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { sql } from '../../../db/kysely.js'
import type { StopTaskCommandInput } from '@aws-sdk/client-ecs'
import { awsSettings } from '../../helpers/aws.js'
import { build, type Overrides } from '../../helpers/build.js'
import { ecsModel, type EcsModel } from '../../helpers/ecs-model.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

// Schedules lock for (interval - 100 ms), at least a second: short intervals keep a second pass close.
const simulated: Overrides = { SIMULATED_START_MS: '0', WARM_POOL_INTERVAL_MS: '100', REAP_INTERVAL_MS: '100' }
const aws: Overrides = { ...simulated, ...awsSettings, CONTAINER_POLL_MS: '20', CONTAINER_POLL_BUDGET_MS: '200' }

const assign = (app: App, headers: Record<string, string>, body: object) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': randomUUID() } })
const ping = (app: App, id: string, secret: string, available: boolean) =>
  app.inject({ method: 'POST', url: `/v1/containers/${id}/ping`, payload: { available }, headers: { 'x-container-secret': secret } })
const operators = new WeakMap<App, Record<string, string>>()
/** An operator sets the pool's target through the admin API, as they would. */
async function setTarget (app: App, offer: { app: string, region: string }, target: number) {
  let headers = operators.get(app)
  if (!headers) operators.set(app, headers = (await given(app).signedIn({ role: 'developer' })).headers)
  const res = await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { target }, headers })
  if (res.statusCode !== 200) throw new Error(`setWarmPoolTarget answered ${res.statusCode}: ${res.body}`)
  return res.json()
}
/** The pool as an operator sees it (GET /v1/admin/warm-pools). */
async function poolOf (app: App, offer: { app: string, region: string }) {
  const res = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}&region=${offer.region}`, headers: operators.get(app)! })
  return res.json().items[0]
}
const containersOf = (app: App, offer: { app: string, region: string }) =>
  app.db.selectFrom('container').selectAll().where('app_id', '=', offer.app).where('region_code', '=', offer.region).orderBy('created_at').execute()

/** The next pass of a schedule, once the lock of the previous one lets it run. */
async function nextPass (app: App, name: string) {
  let result: Record<string, number> | false = false
  await until(async () => (result = await app.schedules.runOnce(name)) !== false, 3000)
  return result
}

/** An app on the ECS model, with one offer whose cluster the model knows. */
async function onEcs (t: Test, overrides: Overrides = {}) {
  const model = ecsModel()
  t.teardown(() => model.restore()) // after the app closed: teardowns run last-in first-out
  const app = await build(t, { ...aws, ...overrides })
  const offer = await given(app).offer()
  const cluster = await app.db.selectFrom('cluster').selectAll().where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  model.addCluster(cluster.name)
  return { app, model, offer, cluster }
}

/** Acts as the containers of the model: each running task pings with its own secret, until `ids` are ready. */
async function bringUp (app: App, model: EcsModel, ids: string[]) {
  return until(async () => {
    const rows = await app.db.selectFrom('container').select(['id', 'state', 'host_ip']).where('id', 'in', ids).execute()
    for (const row of rows.filter((r) => r.state === 'starting' && r.host_ip)) {
      const task = model.tasksOf(row.id)[0]
      if (task) await ping(app, row.id, model.environmentOf(task).FRACTAL_CONTAINER_SECRET!, true)
    }
    return rows.length === ids.length && rows.every((r) => r.state === 'available' || r.state === 'in_use')
  })
}

t.test('warm-pools › valid › a pool below its target gets containers started once; the worker makes them available', async (t) => {
  const app = await build(t, simulated)
  const offer = await given(app).offer()
  await setTarget(app, offer, 3)

  t.same(await app.schedules.runOnce('warm-pools'), { started: 3, stopped: 0 })

  const started = await containersOf(app, offer)
  t.equal(started.length, 3)
  for (const c of started) {
    t.equal(c.user_id, null, 'nobody holds a warm container')
    t.ok(c.state === 'creating' || c.state === 'starting', `starting (${c.state})`)
    t.ok(c.start_job_id, 'with its start job')
  }
  const jobs = await app.db.selectFrom('job').selectAll().where('id', 'in', started.map((c) => c.start_job_id!)).execute()
  t.equal(jobs.length, 3)
  t.ok(jobs.every((j) => j.kind === 'start_container' && (j.state === 'queued' || j.state === 'running')))

  t.same(await nextPass(app, 'warm-pools'), { started: 0, stopped: 0 }, 'those on their way count: a second pass starts none')
  t.equal((await containersOf(app, offer)).length, 3)

  t.match(await poolOf(app, offer), { target: 3, ready: 0, starting: 3 })

  app.queue.startWorker(2)
  t.ok(await until(async () => (await containersOf(app, offer)).every((c) => c.state === 'available')), 'all three become available')
  const ready = await containersOf(app, offer)
  t.ok(ready.every((c) => c.host_ip && c.port_32262 && c.user_id === null))
  t.match(await poolOf(app, offer), { target: 3, ready: 3, starting: 0 })
  t.same(await nextPass(app, 'warm-pools'), { started: 0, stopped: 0 }, 'a full pool gets nothing')

  // The pool serves a user at once.
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app })
  t.equal(res.statusCode, 201)
})

t.test('warm-pools › valid › a region in maintenance, a disabled region and a global window get no warm containers', async (t) => {
  const app = await build(t, simulated)
  const open = await given(app).offer()
  const maintained = await given(app).offer()
  const disabled = await given(app).offer({ enabled: false })
  for (const offer of [open, maintained, disabled]) await setTarget(app, offer, 2)
  await app.db.insertInto('maintenance').values({ scope: maintained.region, message: 'Upgrading hosts', ends_at: new Date(Date.now() + 3600_000) }).execute()
  // A window that ended does not count.
  await app.db.insertInto('maintenance').values({ scope: open.region, message: 'Done', starts_at: new Date(Date.now() - 7200_000), ends_at: new Date(Date.now() - 3600_000) }).execute()

  t.same(await app.schedules.runOnce('warm-pools'), { started: 2, stopped: 0 })
  t.equal((await containersOf(app, open)).length, 2)
  t.equal((await containersOf(app, maintained)).length, 0, 'none in the region under maintenance')
  t.equal((await containersOf(app, disabled)).length, 0, 'none in the disabled region')

  await setTarget(app, open, 4)
  await app.db.insertInto('maintenance').values({ scope: 'global', message: 'Everything down', ends_at: new Date(Date.now() + 3600_000) }).execute()
  t.same(await nextPass(app, 'warm-pools'), { started: 0, stopped: 0 }, 'a global window stops every refill')
  t.equal((await containersOf(app, open)).length, 2)
})

t.test('warm-pools › valid › WARM_POOL_MAX_STARTS caps the starts of one pass; the next pass goes on', async (t) => {
  const app = await build(t, { ...simulated, WARM_POOL_MAX_STARTS: '2' })
  const offer = await given(app).offer()
  await setTarget(app, offer, 5)

  t.same(await app.schedules.runOnce('warm-pools'), { started: 2, stopped: 0 })
  t.equal((await containersOf(app, offer)).length, 2)
  t.same(await nextPass(app, 'warm-pools'), { started: 2, stopped: 0 })
  t.equal((await containersOf(app, offer)).length, 4)
})

t.test('reap-containers › valid › a container silent for 2 minutes fails, its ECS task is stopped and its user logged off; a fresh one stays', async (t) => {
  const { app, model, offer } = await onEcs(t)
  await setTarget(app, offer, 2)
  t.same(await app.schedules.runOnce('warm-pools'), { started: 2, stopped: 0 })
  app.queue.startWorker(2)
  const ids = (await containersOf(app, offer)).map((c) => c.id)
  t.ok(await bringUp(app, model, ids), 'both warm containers run and report')

  // A user takes one and connects; later that container goes silent.
  const user = await given(app).signedIn()
  const taken = await assign(app, user.headers, { app: offer.app })
  t.equal(taken.statusCode, 201)
  const silent = taken.json().id as string
  const fresh = ids.find((id) => id !== silent)!
  const silentTask = model.tasksOf(silent)[0]!
  t.equal((await ping(app, silent, model.environmentOf(silentTask).FRACTAL_CONTAINER_SECRET!, false)).statusCode, 204)
  await app.db.updateTable('container').set({ last_ping_at: new Date(Date.now() - 120_000) }).where('id', '=', silent).execute()
  await app.db.updateTable('container').set({ last_ping_at: new Date() }).where('id', '=', fresh).execute()

  t.match(await app.schedules.runOnce('reap-containers'), { reaped: 1 })

  const shown = (await app.inject({ method: 'GET', url: `/v1/containers/${silent}`, headers: user.headers })).json()
  t.match(shown, { state: 'failed', failureReason: 'no ping for 90 s', connection: null })
  t.equal(silentTask.status, 'STOPPED', 'its task does not run on')
  t.equal(silentTask.stoppedReason, 'no ping for 90 s')
  const sessions = await app.db.selectFrom('container_session').selectAll().where('container_id', '=', silent).execute()
  t.equal(sessions.length, 1)
  t.ok(sessions[0]!.logoff_at, 'the user\'s session is closed')

  const kept = await app.db.selectFrom('container').selectAll().where('id', '=', fresh).executeTakeFirstOrThrow()
  t.equal(kept.state, 'available')
  t.equal(model.tasksOf(fresh)[0]!.status, 'RUNNING')
  t.equal(model.calls('StopTask'), 1, 'only the silent one was stopped')
})

t.test('reap-containers › valid › a start past its deadline fails with start_timeout, and no task starts for it afterwards', async (t) => {
  const { app, model, offer } = await onEcs(t)
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app })
  t.equal(res.statusCode, 202)
  const { job, container } = res.json()
  await app.db.updateTable('job').set({ deadline_at: new Date(Date.now() - 1000) }).where('id', '=', job.id).execute()

  const pass = await app.schedules.runOnce('reap-containers')
  t.match(pass, { failed: 1 })

  const read = (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json()
  t.match(read, { state: 'failed', errorCode: 'start_timeout' })
  t.match((await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })).json(), { state: 'failed', failureReason: /deadline/ })

  // The queued start, picked up later, leaves it so.
  app.queue.startWorker(1)
  t.ok(await until(async () => (await app.queue.counts('containers')).waiting + (await app.queue.counts('containers')).active === 0))
  t.same(model.tasksOf(container.id).filter((task) => task.status !== 'STOPPED'), [], 'no task runs for a failed start')
  t.equal((await app.db.selectFrom('container').select('state').where('id', '=', container.id).executeTakeFirstOrThrow()).state, 'failed')
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json().state, 'failed')
})

t.test('reap-containers › valid › a start whose queue entry was lost is enqueued again and completes', async (t) => {
  const app = await build(t, simulated)
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app })
  t.equal(res.statusCode, 202)
  const { job, container } = res.json()
  // Another worker, on the same database but a queue that never saw this job: the enqueue was lost.
  const worker = await build(t, { ...simulated, DATABASE_URL: app.config.db.url! })
  t.equal((await worker.queue.counts('containers')).waiting, 0)
  worker.queue.startWorker(2)
  await app.db.updateTable('job').set({ updated_at: sql<Date>`now() - interval '10 minutes'` }).where('id', '=', job.id).execute()

  t.match(await worker.schedules.runOnce('reap-containers'), { resumed: 1 })

  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json().state === 'succeeded'), 'the start completes')
  t.match((await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })).json(), { state: 'in_use', connectable: true })
  const row = await app.db.selectFrom('container').select('host_ip').where('id', '=', container.id).executeTakeFirstOrThrow()
  t.match(row.host_ip, /^203\.0\.113\./, 'on a simulated host (its address reaches the client with a connection grant)')
  t.match(await nextPass(worker, 'reap-containers'), { resumed: 0 }, 'a finished start is not resumed again')
})

t.test('reap-containers › faults › a start that is only waiting in a busy queue is resumed: the task it places still lets its container in', async (t) => {
  const { app, model, offer } = await onEcs(t)
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app })
  t.equal(res.statusCode, 202)
  const { job, container } = res.json()
  // The job is still queued (workers busy for a while): nothing touched it for 10 minutes.
  await app.db.updateTable('job').set({ updated_at: sql<Date>`now() - interval '10 minutes'` }).where('id', '=', job.id).execute()
  t.match(await app.schedules.runOnce('reap-containers'), { resumed: 1 })

  app.queue.startWorker(1)
  t.ok(await until(async () => (await app.db.selectFrom('container').select('host_ip').where('id', '=', container.id).executeTakeFirstOrThrow()).host_ip !== null), 'the task runs')
  const tasks = model.tasksOf(container.id)
  t.equal(tasks.length, 1, 'one task, however many jobs ran')
  // The container pings with the secret it was started with, as a real one would.
  const answer = await ping(app, container.id, model.environmentOf(tasks[0]!).FRACTAL_CONTAINER_SECRET!, true)
  t.equal(answer.statusCode, 204, 'the container that was started can authenticate')
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json().state === 'succeeded', 2000), 'the start completes')
})

t.test('reap-orphan-tasks › valid › old tasks no live container claims are stopped; young ones and those of live or starting containers stay', async (t) => {
  const { app, model, offer, cluster } = await onEcs(t)
  const old = new Date(Date.now() - 10 * 60_000)
  // A start whose task was placed but not recorded yet (its job is between RunTask and the database).
  const user = await given(app).signedIn()
  const assigned = await assign(app, user.headers, { app: offer.app })
  t.equal(assigned.statusCode, 202)
  const starting = assigned.json().container.id as string
  const placedTask = model.addOrphan(cluster.name, { startedBy: starting, createdAt: old })
  const leftover = model.addOrphan(cluster.name, { startedBy: null, createdAt: old })
  const young = model.addOrphan(cluster.name, { startedBy: null, createdAt: new Date(Date.now() - 1000) })

  // A ready container and its task.
  const warm = await given(app).warmContainer(offer)
  const warmTask = model.addOrphan(cluster.name, { startedBy: warm.id, createdAt: old })
  await app.db.updateTable('container').set({ task_arn: warmTask.taskArn, cluster_id: cluster.id }).where('id', '=', warm.id).execute()
  // A failed container whose task still runs.
  const dead = await given(app).warmContainer(offer)
  const deadTask = model.addOrphan(cluster.name, { startedBy: dead.id, createdAt: old })
  await app.db.updateTable('container').set({ state: 'failed', task_arn: deadTask.taskArn, cluster_id: cluster.id }).where('id', '=', dead.id).execute()

  t.same(await app.schedules.runOnce('reap-orphan-tasks'), { stopped: 2, lost: 0, errors: 0 })

  t.equal(leftover.status, 'STOPPED', 'the leftover task is stopped')
  t.equal(deadTask.status, 'STOPPED', 'the failed container\'s task is stopped')
  t.equal(young.status, 'RUNNING', 'a task younger than the grace stays')
  t.equal(warmTask.status, 'RUNNING', 'the live container\'s task stays')
  t.equal(placedTask.status, 'RUNNING', 'the starting container\'s task stays')
  t.same(model.received<StopTaskCommandInput>('StopTask').map((s) => s.task).sort(), [leftover.taskArn, deadTask.taskArn].sort())
  t.ok(model.received<StopTaskCommandInput>('StopTask').every((s) => s.cluster === cluster.name && /orphan/.test(s.reason ?? '')))
  t.equal((await app.db.selectFrom('container').select('state').where('id', '=', warm.id).executeTakeFirstOrThrow()).state, 'available', 'rows are left alone')
})

t.test('reap-orphan-tasks › faults › each cluster on its own: one ECS lost is marked failed and audited, one throttled is skipped, the next is still reaped (issue 19)', async (t) => {
  const { app, model, offer, cluster } = await onEcs(t)
  const old = new Date(Date.now() - 10 * 60_000)
  // Two clusters made before the offer's (checked first, oldest first): the first's ListTasks is throttled, ECS lost the second.
  const older = (name: string, minutes: number) => app.db.insertInto('cluster').values({
    region_code: offer.region, name, status: 'active', capacity: 4, created_at: new Date(Date.now() - minutes * 60_000)
  }).returningAll().executeTakeFirstOrThrow()
  const busy = await older(`${cluster.name}-busy`, 20)
  const lost = await older(`${cluster.name}-lost`, 10)
  model.addCluster(busy.name)
  const busyOrphan = model.addOrphan(busy.name, { createdAt: old })
  model.throttle('ListTasks', 1)
  const orphan = model.addOrphan(cluster.name, { createdAt: old })

  t.same(await app.schedules.runOnce('reap-orphan-tasks'), { stopped: 1, lost: 1, errors: 1 })

  t.equal(orphan.status, 'STOPPED', 'the cluster after them is still reaped')
  t.equal(busyOrphan.status, 'RUNNING', 'the throttled cluster waits for the next pass')
  const statusOf = async (id: string) => (await app.db.selectFrom('cluster').select('status').where('id', '=', id).executeTakeFirstOrThrow()).status
  t.equal(await statusOf(lost.id), 'failed', 'no container is placed on a cluster ECS does not have')
  t.equal(await statusOf(busy.id), 'active')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('target_id', '=', lost.id).execute()
  t.match(audit, [{ action: 'cluster.lost', actor_id: null, details: { reason: `ECS has no cluster named ${lost.name} in ${offer.region}` } }])

  t.same(await nextPass(app, 'reap-orphan-tasks'), { stopped: 1, lost: 0, errors: 0 }, 'the next pass reaps the throttled one and does not look at the lost one again')
  t.equal(busyOrphan.status, 'STOPPED')
})

t.test('schedules › concurrency › two workers on the same Redis and database: one pass runs, the other is told false', async (t) => {
  const first = await build(t, simulated)
  const second = await build(t, { ...simulated, DATABASE_URL: first.config.db.url!, REDIS_PREFIX: first.config.redis.prefix })
  const offer = await given(first).offer()
  await setTarget(first, offer, 3)

  const results = await Promise.all([first.schedules.runOnce('warm-pools'), second.schedules.runOnce('warm-pools')])

  t.equal(results.filter((r) => r === false).length, 1, 'one of them is turned away')
  t.same(results.find((r) => r !== false), { started: 3, stopped: 0 })
  t.equal((await containersOf(first, offer)).length, 3, 'the pool is filled once, not twice')
})

t.test('schedules › valid › a finished pass does not hold the lock: the same worker\'s next pass runs at once', async (t) => {
  // The interval is long (the default 15 s) so a lock kept after the pass would show.
  const app = await build(t, { ...simulated, WARM_POOL_INTERVAL_MS: '15000' })
  const offer = await given(app).offer()
  await setTarget(app, offer, 1)

  t.same(await app.schedules.runOnce('warm-pools'), { started: 1, stopped: 0 })
  await setTarget(app, offer, 2)
  t.same(await app.schedules.runOnce('warm-pools'), { started: 1, stopped: 0 }, 'no other process holds the lock: the pass runs')
})
