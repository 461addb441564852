// A worker (worker.ts, a process of its own) SIGKILLed in the middle of container starts: one while it
// waits for ECS's answer to RunTask (the task exists, the worker never hears of it), one while it polls a
// task that is still provisioning. Another worker takes both jobs back (bee-queue's stall check, every
// QUEUE_STALL_INTERVAL_MS) and finishes them: each container ends in_use with exactly one task, and no
// user gets a second container. ECS is played over HTTP (test/helpers/ecs-http.ts) so it outlives the worker.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { startEcsStandIn } from '../helpers/ecs-http.js'
import { given } from '../helpers/given.js'
import { entryEnv, runEntry } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'

t.test('faults › worker SIGKILLed mid-job › another worker takes the start jobs back and finishes them, one task and one container each', async (t) => {
  const ecs = await startEcsStandIn({ pendingMs: 600_000 })
  t.teardown(() => ecs.close())
  const web = await build(t, awsSettings)
  const offer = await given(web).offer()
  const cluster = await web.db.selectFrom('cluster').select('name').where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  ecs.addCluster(cluster.name)
  const env = entryEnv(web.config, {
    ...ecs.env,
    ...awsSettings,
    PUBLIC_URL: 'https://api.fractal.test',
    CONTAINER_POLL_MS: '50',
    // One attempt polls for a long time: the kill finds it polling, not between two queue jobs.
    CONTAINER_POLL_BUDGET_MS: '60000',
    QUEUE_STALL_INTERVAL_MS: '1000'
  })

  const first = runEntry(t, 'worker.ts', env)
  t.ok(await first.waitFor(/worker started/), 'the first worker runs')

  const [waitsForRunTask, polls] = [await given(web).signedIn(), await given(web).signedIn()]
  const assign = async (headers: Record<string, string>) => {
    const res = await web.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...headers, 'idempotency-key': randomUUID() } })
    t.equal(res.statusCode, 202, 'the pool is empty: the container starts')
    return res.json() as { job: { id: string }, container: { id: string } }
  }
  // ECS starts the first task but keeps its answer until the worker is long dead.
  ecs.hold('RunTask', 60_000)
  const held = await assign(waitsForRunTask.headers)
  t.ok(await until(() => ecs.calls('RunTask') === 1), 'the worker sent RunTask')
  const polled = await assign(polls.headers)
  t.ok(await until(() => ecs.polls(polled.container.id) >= 2), 'the second start polls its provisioning task')

  first.child.kill('SIGKILL')
  t.equal(await first.exited, 'SIGKILL', 'the first worker is killed')
  const job = (id: string) => web.db.selectFrom('job').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  t.match(await job(held.job.id), { state: 'running', message: 'placing the task' }, 'the first job died while placing its task')
  t.match(await job(polled.job.id), { state: 'running', message: 'waiting for the task to run' }, 'the second died while polling')

  // The tasks come up; the worker that would have seen it is gone.
  ecs.pendingMs = 0
  const second = runEntry(t, 'worker.ts', env)
  t.ok(await second.waitFor(/worker started/), 'a second worker runs')
  t.ok(await second.waitFor(/stalled job taken back/, 15_000), 'it takes the stalled jobs back')

  for (const started of [held, polled]) {
    t.ok(await until(async () => (await job(started.job.id)).message === 'waiting for the container to report', 15_000), 'the start goes on where it was')
    const [task] = ecs.tasksOf(started.container.id)
    // The container comes up and reports with the secret its task was given.
    const ping = await web.inject({ method: 'POST', url: `/v1/containers/${started.container.id}/ping`, payload: { available: false }, headers: { 'x-container-secret': task!.environment.FRACTAL_CONTAINER_SECRET! } })
    t.equal(ping.statusCode, 204, 'the container reports')
    t.ok(await until(async () => (await job(started.job.id)).state === 'succeeded'), 'the start job succeeds')
    t.equal(ecs.tasksOf(started.container.id).length, 1, 'exactly one task for the container')
  }
  t.equal(ecs.calls('RunTask'), 2, 'no RunTask was sent again: the retry found the first task by startedBy')
  for (const user of [waitsForRunTask, polls]) {
    const rows = await web.db.selectFrom('container').select(['state', 'task_arn']).where('user_id', '=', user.account.id).execute()
    t.match(rows, [{ state: 'in_use', task_arn: /^arn:aws:ecs:/ }], 'one container for the user, in use')
  }
  t.equal(ecs.tasks.filter((task) => task.status !== 'STOPPED').length, 2, 'no other task runs')
})
