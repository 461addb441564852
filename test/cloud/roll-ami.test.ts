// AMI rolls against moto (issue 19): the launch template versions and the version the group launches, as
// moto holds them. moto has no instance refreshes: StartInstanceRefresh answers 500 there, which is how a
// roll once made a version per retry (2 to 7) with the group on $Latest, the new AMI live after a failed
// roll. For the successful roll, StartInstanceRefresh and DescribeInstanceRefreshes alone are played by
// aws-sdk-client-mock, answering as https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StartInstanceRefresh.html
// and API_DescribeInstanceRefreshes.html describe (an id, then InProgress, then Successful); every other
// call goes through to moto. Region ap-southeast-2 is this file's alone (test/helpers/moto.ts).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import {
  AutoScalingClient, DescribeAutoScalingGroupsCommand, DescribeInstanceRefreshesCommand, StartInstanceRefreshCommand, UpdateAutoScalingGroupCommand
} from '@aws-sdk/client-auto-scaling'
import { DescribeLaunchTemplatesCommand, DescribeLaunchTemplateVersionsCommand, EC2Client } from '@aws-sdk/client-ec2'
import { mockClient } from 'aws-sdk-client-mock'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { hostSecurityGroup, moto } from '../helpers/moto.js'
import { until } from '../helpers/wait.js'

const region = 'ap-southeast-2'
const oldAmi = 'ami-0a1b2c3d4e5f60718'
const newAmi = 'ami-0f9e8d7c6b5a40312'
const server = await moto()
if (server.skip) t.comment(server.skip)
const skip = server.skip

const ec2 = new EC2Client({ region })
const asg = new AutoScalingClient({ region })

let shared: ReturnType<typeof setUp> | undefined
async function setUp () {
  const group = await hostSecurityGroup(region, `fractal-hosts-${randomBytes(4).toString('hex')}`)
  // One SDK attempt per call and short queue retries: the failing roll goes through its five retries fast.
  const app = await build(t, { ...awsSettings, FLEET_SECURITY_GROUPS: group, CLUSTER_POLL_MS: '50', QUEUE_RETRY_BACKOFF_MS: '20', AWS_MAX_ATTEMPTS: '1' })
  await given(app).region({ code: region })
  const dev = await given(app).signedIn({ role: 'developer' })
  app.queue.startWorker(2)
  return { app, headers: dev.headers }
}
const onMoto = () => (shared ??= setUp())

/** A new active cluster (the only active one of the region: earlier ones are set aside), on the old AMI. */
async function activeCluster () {
  const { app, headers } = await onMoto()
  await app.db.updateTable('cluster').set({ status: 'deleted' }).where('region_code', '=', region).execute()
  await app.db.updateTable('region').set({ current_ami: oldAmi }).where('code', '=', region).execute()
  const res = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region, instanceType: 'g4dn.xlarge', minSize: 0, maxSize: 2 }, headers })
  const id = res.json().cluster.id as string
  const row = () => app.db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  if (!await until(async () => (await row()).status === 'active')) throw new Error('the cluster did not become active')
  return { cluster: await row(), row }
}

async function roll () {
  const { app, headers } = await onMoto()
  const res = await app.inject({ method: 'POST', url: `/v1/admin/regions/${region}/ami`, payload: { ami: newAmi, strategy: 'rolling' }, headers })
  if (res.statusCode !== 202) throw new Error(`rollAmi: ${res.statusCode} ${res.body}`)
  const read = async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${res.json().id}`, headers })).json()
  await until(async () => ['succeeded', 'failed'].includes((await read()).state), 20_000)
  return read()
}

/** What moto holds: the template's versions and default, the version the group launches. */
async function inMoto (name: string) {
  const versions = (await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: name }))).LaunchTemplateVersions ?? []
  const template = (await ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [name] }))).LaunchTemplates?.[0]
  const group = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }))).AutoScalingGroups?.[0]
  return {
    images: Object.fromEntries(versions.map((v) => [v.VersionNumber, v.LaunchTemplateData?.ImageId])),
    defaultVersion: template?.DefaultVersionNumber,
    groupVersion: group?.LaunchTemplate?.Version
  }
}

t.test('rollAmi › faults › on moto (no instance refreshes: 500): the roll fails after its retries with one new version; the group and the default stay on version 1', { skip }, async (t) => {
  const { cluster, row } = await activeCluster()

  const job = await roll()

  t.match(job, { state: 'failed', errorCode: 'ami_roll_failed', children: [{ state: 'failed', errorCode: 'instance_refresh_failed', result: { version: '2' } }] })
  t.same(await inMoto(cluster.name), { images: { 1: oldAmi, 2: newAmi }, defaultVersion: 1, groupVersion: '1' }, 'one version made whatever the retries; version 1 stays in force')
  t.match(await row(), { ami: oldAmi, steps: { launchTemplateVersion: '1' } })
})

t.test('rollAmi › valid › on moto, the refresh played by the SDK mock: once it succeeded, the group and the default are on version 2', { skip }, async (t) => {
  const { cluster, row } = await activeCluster()
  const refreshes = mockClient(AutoScalingClient)
  t.teardown(() => refreshes.restore())
  refreshes.send.callThrough()
  refreshes.on(DescribeInstanceRefreshesCommand)
    .resolvesOnce({ InstanceRefreshes: [{ InstanceRefreshId: 'refresh-moto-1', AutoScalingGroupName: cluster.name, Status: 'InProgress', PercentageComplete: 50 }] })
    .resolves({ InstanceRefreshes: [{ InstanceRefreshId: 'refresh-moto-1', AutoScalingGroupName: cluster.name, Status: 'Successful', PercentageComplete: 100 }] })
  let during: Awaited<ReturnType<typeof inMoto>> | undefined
  refreshes.on(StartInstanceRefreshCommand).callsFake(async () => {
    during = await inMoto(cluster.name)
    return { InstanceRefreshId: 'refresh-moto-1' }
  })

  const job = await roll()

  t.match(job, { state: 'succeeded', children: [{ state: 'succeeded', result: { version: '2', refreshId: 'refresh-moto-1' } }] })
  t.same(during, { images: { 1: oldAmi, 2: newAmi }, defaultVersion: 1, groupVersion: '1' }, 'while the refresh runs, version 1 is in force')
  t.same(await inMoto(cluster.name), { images: { 1: oldAmi, 2: newAmi }, defaultVersion: 2, groupVersion: '2' }, 'after it succeeded, version 2')
  t.match(await row(), { ami: newAmi, steps: { launchTemplateVersion: '2' } })
  t.match(refreshes.commandCalls(StartInstanceRefreshCommand)[0]?.args[0].input, {
    DesiredConfiguration: { LaunchTemplate: { Version: '2' } }, Preferences: { ScaleInProtectedInstances: 'Refresh', StandbyInstances: 'Terminate', AutoRollback: true }
  })
})

t.test('rollAmi › valid › on moto: a group made before groups were pinned ($Latest) is pinned to the version it runs before the new one is made', { skip }, async (t) => {
  const { cluster } = await activeCluster()
  await asg.send(new UpdateAutoScalingGroupCommand({ AutoScalingGroupName: cluster.name, LaunchTemplate: { LaunchTemplateName: cluster.name, Version: '$Latest' } }))

  const job = await roll()

  t.equal(job.state, 'failed', 'moto has no refreshes')
  t.same(await inMoto(cluster.name), { images: { 1: oldAmi, 2: newAmi }, defaultVersion: 1, groupVersion: '1' }, 'the new version is not live')
})
