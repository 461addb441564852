// What a cluster's hosts are launched with on AWS (issue 19): the instance profile, security groups and
// public-address setting of the launch template, per region; the subnets of FLEET_SUBNETS or, without it,
// the default VPC's default subnets; and a clear failure when a region has neither. The cloud is the
// SDK-boundary model (test/helpers/fleet-model.ts); test/cloud/ runs the same against moto.
import t, { type Test } from 'tap'
import type { CreateAutoScalingGroupCommandInput } from '@aws-sdk/client-auto-scaling'
import type { CreateLaunchTemplateCommandInput } from '@aws-sdk/client-ec2'
import { awsSettings } from '../../helpers/aws.js'
import { build, type Overrides } from '../../helpers/build.js'
import { fleetModel } from '../../helpers/fleet-model.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

const regionAmi = 'ami-0123456789abcdef0'

/** An app on the model; `create(region)` makes a cluster through the API and waits for its job to end. */
async function onAws (t: Test, overrides: Overrides) {
  const model = fleetModel()
  t.teardown(() => model.restore())
  const app = await build(t, { ...awsSettings, CLUSTER_POLL_MS: '20', QUEUE_RETRY_BACKOFF_MS: '50', ...overrides })
  const dev = await given(app).signedIn({ role: 'developer' })
  app.queue.startWorker(2)
  const create = async (code: string) => {
    if (!await app.db.selectFrom('region').select('code').where('code', '=', code).executeTakeFirst()) await given(app).region({ code })
    await app.db.updateTable('region').set({ current_ami: regionAmi }).where('code', '=', code).execute()
    const res = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region: code, instanceType: 'g4dn.xlarge', minSize: 0, maxSize: 2 }, headers: dev.headers })
    if (res.statusCode !== 202) throw new Error(`createCluster: ${res.statusCode} ${res.body}`)
    const { cluster, job } = res.json() as { cluster: { id: string, name: string }, job: { id: string } }
    const readJob = () => app.db.selectFrom('job').selectAll().where('id', '=', job.id).executeTakeFirstOrThrow()
    if (!await until(async () => ['succeeded', 'failed'].includes((await readJob()).state))) throw new Error('the create job did not end')
    const row = await app.db.selectFrom('cluster').selectAll().where('id', '=', cluster.id).executeTakeFirstOrThrow()
    return { cluster: row, job: await readJob() }
  }
  return { app, model, create }
}

t.test('createCluster › valid › per-region security groups, an instance profile ARN and no public address reach the launch template', async (t) => {
  const profile = 'arn:aws:iam::123456789012:instance-profile/fractal/host'
  const { model, create } = await onAws(t, {
    FLEET_SECURITY_GROUPS: 'xx-east-1=sg-0aaa0000000000001|sg-0aaa0000000000002;xx-west-1=sg-0bbb0000000000001',
    FLEET_INSTANCE_PROFILE: profile,
    FLEET_PUBLIC_IP: 'false',
    FLEET_SUBNETS: 'subnet-0c0c0c0c0c0c0c0c0'
  })

  const east = await create('xx-east-1')
  const west = await create('xx-west-1')

  t.equal(east.cluster.status, 'active')
  t.equal(west.cluster.status, 'active')
  const lts = model.received<CreateLaunchTemplateCommandInput>('CreateLaunchTemplate')
  const dataOf = (name: string) => lts.find((lt) => lt.LaunchTemplateName === name)?.LaunchTemplateData
  t.match(dataOf(east.cluster.name), { IamInstanceProfile: { Arn: profile }, NetworkInterfaces: [{ AssociatePublicIpAddress: false, Groups: ['sg-0aaa0000000000001', 'sg-0aaa0000000000002'] }] })
  t.same(dataOf(west.cluster.name)?.NetworkInterfaces?.[0]?.Groups, ['sg-0bbb0000000000001'], 'each region its own groups')
  t.notOk(dataOf(east.cluster.name)?.SecurityGroupIds, 'with a network interface the groups go on it, not beside it (EC2 refuses both)')
})

t.test('createCluster › invalid input › FLEET_SECURITY_GROUPS without the cluster\'s region: the creation fails naming it, nothing is left', async (t) => {
  const { model, create } = await onAws(t, { FLEET_SECURITY_GROUPS: 'xx-east-1=sg-0aaa0000000000001' })

  const { cluster, job } = await create('xx-north-1')

  t.equal(cluster.status, 'failed')
  t.match(job, { state: 'failed', error_code: 'cluster_create_failed', message: 'FLEET_SECURITY_GROUPS names no security group for xx-north-1' })
  t.equal(model.calls('CreateLaunchTemplate'), 0, 'no launch template without groups: the default group would admit nobody')
})

t.test('createCluster › invalid input › no FLEET_SUBNETS and no default VPC in the region: the creation fails naming FLEET_SUBNETS, what was made is deleted', async (t) => {
  const { model, create } = await onAws(t, { FLEET_SUBNETS: '' })
  model.deleteDefaultVpc('xx-south-1')

  const { cluster, job } = await create('xx-south-1')

  t.equal(cluster.status, 'failed')
  t.match(job, { state: 'failed', error_code: 'cluster_create_failed', message: /FLEET_SUBNETS names no subnet for xx-south-1, and xx-south-1 has no default VPC/ })
  t.equal(model.calls('CreateAutoScalingGroup'), 0)
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
})

t.test('createCluster › valid › without FLEET_SUBNETS the group gets the default subnets, looked up once per region', async (t) => {
  const { model, create } = await onAws(t, { FLEET_SUBNETS: '' })

  await create('xx-east-1')
  await create('xx-east-1')

  const groups = model.received<CreateAutoScalingGroupCommandInput>('CreateAutoScalingGroup')
  t.same(groups.map((g) => g.VPCZoneIdentifier), ['subnet-default-xx-east-1-a,subnet-default-xx-east-1-b', 'subnet-default-xx-east-1-a,subnet-default-xx-east-1-b'])
  t.equal(model.calls('DescribeSubnets'), 1)
})
