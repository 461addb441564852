// AMI rolls on AWS (issue 19): the new launch template version is made once per cluster and recorded on
// its child job, the group names versions by number, a failed roll leaves the old version in force, and
// the refresh replaces the hosts even though every one is protected from scale in. The cloud is the
// SDK-boundary model (test/helpers/fleet-model.ts), which plays instance refreshes as AWS documents them
// (moto has none); test/cloud/ shows the version handling against moto.
import t, { type Test } from 'tap'
import type { StartInstanceRefreshCommandInput } from '@aws-sdk/client-auto-scaling'
import type { CreateLaunchTemplateVersionCommandInput } from '@aws-sdk/client-ec2'
import { awsSettings } from '../../helpers/aws.js'
import { build } from '../../helpers/build.js'
import { fleetModel, type FleetModel } from '../../helpers/fleet-model.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

const oldAmi = 'ami-0123456789abcdef0'
const newAmi = 'ami-0fedcba9876543210'

/** An app on the model with one active cluster of one host (protected from scale in, as all are), the worker running. */
async function clusterOnAws (t: Test, model: FleetModel = fleetModel()) {
  t.teardown(() => model.restore())
  const app = await build(t, { ...awsSettings, FLEET_SUBNETS: 'subnet-0c0c0c0c0c0c0c0c0', CLUSTER_POLL_MS: '20', QUEUE_RETRY_BACKOFF_MS: '20', AWS_MAX_ATTEMPTS: '1' })
  const region = await given(app).region()
  await app.db.updateTable('region').set({ current_ami: oldAmi }).where('code', '=', region.code).execute()
  const dev = await given(app).signedIn({ role: 'developer' })
  app.queue.startWorker(2)
  const res = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region: region.code, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 }, headers: dev.headers })
  const id = res.json().cluster.id as string
  const row = () => app.db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  if (!await until(async () => (await row()).status === 'active')) throw new Error('the cluster did not become active')
  const cluster = await row()
  const roll = async () => {
    const rolled = await app.inject({ method: 'POST', url: `/v1/admin/regions/${region.code}/ami`, payload: { ami: newAmi, strategy: 'rolling' }, headers: dev.headers })
    if (rolled.statusCode !== 202) throw new Error(`rollAmi: ${rolled.statusCode} ${rolled.body}`)
    const read = async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${rolled.json().id}`, headers: dev.headers })).json()
    if (!await until(async () => ['succeeded', 'failed'].includes((await read()).state))) throw new Error(`the roll did not end: ${JSON.stringify(await read())}`)
    return read()
  }
  const template = model.launchTemplates.find((lt) => lt.name === cluster.name)!
  const group = model.group(cluster.name)!
  return { app, model, cluster, row, roll, template, group }
}

t.test('rollAmi › valid › on AWS: one new version (ClientToken = the child job), refreshed with the protected and standby hosts replaced; then the group and the default are on it', async (t) => {
  const { model, roll, row, template, group } = await clusterOnAws(t)
  t.equal(group.launchTemplateVersion, '1', 'the group names version 1, not $Latest')
  t.ok(group.instances.length > 0 && group.input?.NewInstancesProtectedFromScaleIn, 'its host is protected from scale in')

  const job = await roll()

  t.match(job, { state: 'succeeded', children: [{ state: 'succeeded', result: { version: '2' } }] })
  const [version] = model.received<CreateLaunchTemplateVersionCommandInput>('CreateLaunchTemplateVersion')
  t.match(version, { LaunchTemplateId: template.id, SourceVersion: '1', ClientToken: job.children[0].id, LaunchTemplateData: { ImageId: newAmi } })
  t.equal(model.calls('CreateLaunchTemplateVersion'), 1)
  t.match(template.versions[1], { ImageId: newAmi, IamInstanceProfile: { Name: 'fractal-host' } }, 'the new version keeps the rest of the template')
  const [refresh] = model.received<StartInstanceRefreshCommandInput>('StartInstanceRefresh')
  t.match(refresh, {
    DesiredConfiguration: { LaunchTemplate: { LaunchTemplateId: template.id, Version: '2' } },
    Preferences: { MinHealthyPercentage: 90, ScaleInProtectedInstances: 'Refresh', StandbyInstances: 'Terminate', AutoRollback: true, SkipMatching: true }
  })
  t.equal(group.launchTemplateVersion, '2')
  t.equal(template.defaultVersion, 2)
  t.match(await row(), { ami: newAmi, steps: { launchTemplateVersion: '2' } })
})

t.test('rollAmi › faults › a failed refresh leaves version 1 in force: the group, the default and the cluster row say so', async (t) => {
  const { model, roll, row, template, group, cluster } = await clusterOnAws(t)
  model.failNextRefresh(cluster.name, 'Instance i-0 failed its health checks.')

  const job = await roll()

  t.match(job, { state: 'failed', errorCode: 'ami_roll_failed', children: [{ state: 'failed', errorCode: 'instance_refresh_failed', message: 'Instance i-0 failed its health checks.' }] })
  t.equal(model.refreshes[0]?.status, 'RollbackSuccessful', 'the refresh rolled back the hosts it replaced')
  t.equal(group.launchTemplateVersion, '1')
  t.equal(template.defaultVersion, 1)
  t.equal(model.calls('ModifyLaunchTemplate'), 0)
  t.match(await row(), { ami: oldAmi, steps: { launchTemplateVersion: '1' } })
})

t.test('rollAmi › faults › StartInstanceRefresh throttled four times: the job retries with the version it recorded, never making another', async (t) => {
  const { model, roll, template } = await clusterOnAws(t)
  model.throttle('StartInstanceRefresh', 4)

  const job = await roll()

  t.equal(job.state, 'succeeded')
  t.equal(model.calls('StartInstanceRefresh'), 5)
  t.equal(model.calls('CreateLaunchTemplateVersion'), 1, 'one version, whatever the retries')
  t.equal(template.versions.length, 2)
})

t.test('rollAmi › faults › the answer to CreateLaunchTemplateVersion is lost: the retry sends the same ClientToken and gets the same version', async (t) => {
  const { model, roll, template } = await clusterOnAws(t)
  model.loseAnswer('CreateLaunchTemplateVersion')

  const job = await roll()

  t.equal(job.state, 'succeeded')
  const tokens = model.received<CreateLaunchTemplateVersionCommandInput>('CreateLaunchTemplateVersion').map((i) => i.ClientToken)
  t.equal(tokens.length, 2, 'asked again after the dropped connection')
  t.equal(tokens[0], tokens[1], 'with the child job\'s id both times')
  t.equal(template.versions.length, 2, 'one new version')
  t.equal(template.defaultVersion, 2)
})

t.test('rollAmi › valid › a group made before groups were pinned (on $Latest) is pinned to the version it runs before the new one exists', async (t) => {
  const { model, roll, group, template } = await clusterOnAws(t)
  group.launchTemplateVersion = '$Latest'

  const job = await roll()

  t.equal(job.state, 'succeeded')
  t.same(model.succeeded('UpdateAutoScalingGroup', 'CreateLaunchTemplateVersion', 'StartInstanceRefresh'),
    ['UpdateAutoScalingGroup', 'CreateLaunchTemplateVersion', 'StartInstanceRefresh', 'UpdateAutoScalingGroup'], 'pinned first, moved on once the refresh succeeded')
  t.match(model.received('UpdateAutoScalingGroup')[0], { LaunchTemplate: { LaunchTemplateId: template.id, Version: '1' } })
  t.equal(group.launchTemplateVersion, '2')
})

t.test('rollAmi › faults › the model follows AWS: a refresh with the default preferences fails on protected hosts (why ours sets them)', async (t) => {
  const { group } = await clusterOnAws(t)
  const { AutoScalingClient, StartInstanceRefreshCommand, DescribeInstanceRefreshesCommand } = await import('@aws-sdk/client-auto-scaling')
  const client = new AutoScalingClient({ region: group.region })

  const { InstanceRefreshId } = await client.send(new StartInstanceRefreshCommand({ AutoScalingGroupName: group.name }))
  const look = async () => (await client.send(new DescribeInstanceRefreshesCommand({ AutoScalingGroupName: group.name, InstanceRefreshIds: [InstanceRefreshId!] }))).InstanceRefreshes?.[0]
  await look()
  const ended = await look()

  t.match(ended, { Status: 'Failed', StatusReason: /protected from scale in/ })
})
