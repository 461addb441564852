// Containers against moto (issue 19): a cluster made through the API, its host registered with ECS by the
// test (moto has no ECS agent), then a task placed by the start job, a task stopped by the stop job, and
// the orphan reaper over a cluster ECS does not have. moto runs a task, then moves it on at each
// DescribeTasks (its default "manual, 1" task lifecycle) to DEACTIVATING with an empty stoppedReason, and
// has no port bindings: a start cannot complete here (test/routes/containers/start-on-ecs.test.ts covers
// that on the SDK-boundary model), but the placement and the words of the failure can be checked.
// Region eu-west-1 is this file's alone (test/helpers/moto.ts).
import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling'
import {
  DescribeTasksCommand, ECSClient, ListTasksCommand, RegisterContainerInstanceCommand, RegisterTaskDefinitionCommand, RunTaskCommand
} from '@aws-sdk/client-ecs'
import { createAwsProvider } from '../../services/containers/aws-provider.js'
import { awsSettings, testPublicUrl } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { hostSecurityGroup, moto } from '../helpers/moto.js'
import { until } from '../helpers/wait.js'

const region = 'eu-west-1'
const server = await moto()
if (server.skip) t.comment(server.skip)
const skip = server.skip

const ecs = new ECSClient({ region })
const asg = new AutoScalingClient({ region })
type App = Awaited<ReturnType<typeof build>>

let shared: ReturnType<typeof setUp> | undefined
/** One app for the file: an active cluster made through the API, its host registered, an app offered on a task definition. */
async function setUp () {
  const group = await hostSecurityGroup(region, `fractal-hosts-${randomBytes(4).toString('hex')}`)
  const app = await build(t, { ...awsSettings, FLEET_SECURITY_GROUPS: group, CLUSTER_POLL_MS: '50', CONTAINER_POLL_MS: '50', QUEUE_RETRY_BACKOFF_MS: '50', ORPHAN_TASK_GRACE_MS: '0' })
  await given(app).region({ code: region })
  await app.db.updateTable('region').set({ current_ami: 'ami-0a1b2c3d4e5f60718' }).where('code', '=', region).execute()
  const dev = await given(app).signedIn({ role: 'developer' })
  app.queue.startWorker(2)
  const made = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 }, headers: dev.headers })
  const clusterId = made.json().cluster.id as string
  const row = () => app.db.selectFrom('cluster').selectAll().where('id', '=', clusterId).executeTakeFirstOrThrow()
  if (!await until(async () => (await row()).status === 'active')) throw new Error('the cluster did not become active')
  const cluster = await row()
  // The host the group launched joins the ECS cluster, as its ECS agent would.
  const instanceId = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [cluster.name] }))).AutoScalingGroups?.[0]?.Instances?.[0]?.InstanceId
  const registered = await ecs.send(new RegisterContainerInstanceCommand({ cluster: cluster.name, instanceIdentityDocument: JSON.stringify({ instanceId, region }) }))
  const family = `fractal-chrome-${randomBytes(4).toString('hex')}`
  await ecs.send(new RegisterTaskDefinitionCommand({
    family,
    containerDefinitions: [{
      name: 'fractal-container',
      image: 'fractal/chrome:latest',
      memory: 2048,
      portMappings: [{ containerPort: 32262, hostPort: 0, protocol: 'tcp' }, { containerPort: 32263, hostPort: 0, protocol: 'udp' }, { containerPort: 32273, hostPort: 0, protocol: 'tcp' }]
    }]
  }))
  const offered = await given(app).app({ regions: [region] })
  await app.db.updateTable('app_region').set({ task_definition: `${family}:1` }).where('app_id', '=', offered.id).execute()
  return { app, cluster, offer: offered.id, family, containerInstanceArn: registered.containerInstance!.containerInstanceArn! }
}
const onMoto = () => (shared ??= setUp())

const tasksStartedBy = async (cluster: string, startedBy: string) => {
  const arns = (await ecs.send(new ListTasksCommand({ cluster, startedBy }))).taskArns ?? []
  return arns.length === 0 ? [] : (await ecs.send(new DescribeTasksCommand({ cluster, tasks: arns }))).tasks ?? []
}
const jobOf = (app: App, id: string) => app.db.selectFrom('job').selectAll().where('id', '=', id).executeTakeFirstOrThrow()

t.test('assignContainer › valid › on moto: RunTask places the task on the registered host with the capacity provider and overrides; moto\'s reasonless stop is reported as such', { skip }, async (t) => {
  const { app, cluster, offer, family, containerInstanceArn } = await onMoto()
  const user = await given(app).signedIn()

  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })

  t.equal(res.statusCode, 202, res.body)
  const { job, container } = res.json() as { job: { id: string }, container: { id: string } }
  t.ok(await until(async () => ['succeeded', 'failed'].includes((await jobOf(app, job.id)).state)))
  const [task] = await tasksStartedBy(cluster.name, container.id)
  t.match(task, {
    containerInstanceArn,
    capacityProviderName: cluster.capacity_provider,
    taskDefinitionArn: new RegExp(`task-definition/${family}:1$`),
    overrides: { containerOverrides: [{ name: 'fractal-container' }] }
  }, 'placed on the cluster\'s registered host, through its capacity provider')
  const environment = Object.fromEntries((task?.overrides?.containerOverrides?.[0]?.environment ?? []).map((e) => [e.name, e.value]))
  t.match(environment, { FRACTAL_CONTAINER_ID: container.id, FRACTAL_CALLBACK_URL: testPublicUrl, FRACTAL_CONTAINER_SECRET: /^[\w-]{32,}$/ })
  const failed = await jobOf(app, job.id)
  t.match(failed, { state: 'failed', error_code: 'task_stopped', message: 'the task stopped while starting: ECS gave no reason (the task is deactivating)' },
    'moto stops it with an empty stoppedReason: the job says ECS gave none')
  t.match(task, { desiredStatus: 'STOPPED', stoppedReason: failed.message }, 'and the task is stopped with that reason')
})

t.test('stopContainer › valid › on moto: the stop job stops the container\'s task', { skip }, async (t) => {
  const { app, cluster, offer, family } = await onMoto()
  const user = await given(app).signedIn()
  const containerId = randomUUID()
  // The task runs as the app's start job would place it: through an ECS provider of the same settings.
  const provider = createAwsProvider({ containerName: app.config.containers.ecsContainerName, maxAttempts: app.config.containers.awsMaxAttempts })
  const { taskArn } = await provider.runTask({ containerId, region, cluster: cluster.name, capacityProvider: cluster.capacity_provider, taskDefinition: `${family}:1`, environment: {} })
  await app.db.insertInto('container').values({
    id: containerId,
    app_id: offer,
    region_code: region,
    cluster_id: cluster.id,
    user_id: user.account.id,
    state: 'in_use',
    task_arn: taskArn,
    aes_key: randomBytes(16).toString('hex'),
    secret_hash: randomBytes(32).toString('base64url'),
    host_ip: '198.51.100.7',
    port_32262: 41000,
    port_32263: 41001,
    port_32273: 41002
  }).execute()

  const res = await app.inject({ method: 'DELETE', url: `/v1/containers/${containerId}`, headers: user.headers })

  t.equal(res.statusCode, 202, res.body)
  t.ok(await until(async () => (await jobOf(app, res.json().id)).state === 'succeeded'))
  const [task] = (await ecs.send(new DescribeTasksCommand({ cluster: cluster.name, tasks: [taskArn] }))).tasks ?? []
  t.match(task, { desiredStatus: 'STOPPED', stoppedReason: 'stopped by Fractal' })
})

t.test('reap-orphan-tasks › faults › on moto: a cluster ECS does not have is marked failed, and the next cluster\'s orphan is still stopped', { skip }, async (t) => {
  const { app, cluster, family } = await onMoto()
  // Older than the real one, so the pass meets it first.
  const gone = await app.db.insertInto('cluster').values({
    region_code: region, name: `fractal-${region}-gone${randomBytes(3).toString('hex')}`, status: 'active', capacity: 4, created_at: new Date(cluster.created_at.getTime() - 60_000)
  }).returningAll().executeTakeFirstOrThrow()
  const orphan = (await ecs.send(new RunTaskCommand({ cluster: cluster.name, taskDefinition: `${family}:1`, startedBy: 'an-old-deploy' }))).tasks![0]!.taskArn!

  const pass = await app.schedules.runOnce('reap-orphan-tasks')

  t.match(pass, { lost: 1, errors: 0 })
  t.ok(pass && (pass.stopped ?? 0) >= 1, 'the orphan of the next cluster is stopped')
  const [task] = (await ecs.send(new DescribeTasksCommand({ cluster: cluster.name, tasks: [orphan] }))).tasks ?? []
  t.match(task, { desiredStatus: 'STOPPED', stoppedReason: 'orphaned: no Fractal container runs here' })
  t.equal((await app.db.selectFrom('cluster').select('status').where('id', '=', gone.id).executeTakeFirstOrThrow()).status, 'failed')
  t.equal((await app.db.selectFrom('cluster').select('status').where('id', '=', cluster.id).executeTakeFirstOrThrow()).status, 'active')
})
