// Clusters against moto (issue 19): the real app and worker, their real EC2 / Auto Scaling / ECS SDK clients,
// and an AWS emulator nobody here wrote. What is asserted is what moto holds afterwards: the launch template
// (instance profile, security groups, public address, user data), the group (an explicit template version,
// the default VPC's subnets when FLEET_SUBNETS is unset), the capacity provider and the cluster; a resize;
// a delete that tears everything down. Region us-west-2 is this file's alone (test/helpers/moto.ts).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { AutoScalingClient, DescribeAutoScalingGroupsCommand } from '@aws-sdk/client-auto-scaling'
import { DescribeLaunchTemplatesCommand, DescribeLaunchTemplateVersionsCommand, DescribeSubnetsCommand, EC2Client } from '@aws-sdk/client-ec2'
import { DescribeCapacityProvidersCommand, DescribeClustersCommand, ECSClient } from '@aws-sdk/client-ecs'
import { awsSettings, testInstanceProfile, testPublicUrl } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { hostSecurityGroup, moto } from '../helpers/moto.js'
import { until } from '../helpers/wait.js'

const region = 'us-west-2'
const ami = 'ami-0a1b2c3d4e5f60718'
const server = await moto()
if (server.skip) t.comment(server.skip)
const skip = server.skip

type App = Awaited<ReturnType<typeof build>>
let shared: Promise<{ app: App, headers: Record<string, string>, group: string }> | undefined
/** One app for the file (its worker running), a developer, the hosts' security group made in moto. */
function onMoto () {
  shared ??= (async () => {
    const group = await hostSecurityGroup(region, `fractal-hosts-${randomBytes(4).toString('hex')}`)
    // FLEET_SUBNETS unset: the default VPC's default subnets.
    const app = await build(t, { ...awsSettings, FLEET_SECURITY_GROUPS: group, CLUSTER_POLL_MS: '50', QUEUE_RETRY_BACKOFF_MS: '50', AWS_MAX_ATTEMPTS: '2' })
    await given(app).region({ code: region })
    await app.db.updateTable('region').set({ current_ami: ami }).where('code', '=', region).execute()
    app.queue.startWorker(2)
    return { app, headers: (await given(app).signedIn({ role: 'developer' })).headers, group }
  })()
  return shared
}

const ec2 = new EC2Client({ region })
const asg = new AutoScalingClient({ region })
const ecs = new ECSClient({ region })

async function activeCluster (minSize = 1) {
  const { app, headers } = await onMoto()
  const res = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region, instanceType: 'g4dn.xlarge', minSize, maxSize: 3 }, headers })
  if (res.statusCode !== 202) throw new Error(`createCluster: ${res.statusCode} ${res.body}`)
  const { cluster, job } = res.json() as { cluster: { id: string, name: string }, job: { id: string } }
  const readJob = () => app.db.selectFrom('job').selectAll().where('id', '=', job.id).executeTakeFirstOrThrow()
  await until(async () => ['succeeded', 'failed'].includes((await readJob()).state))
  return { cluster, job: await readJob() }
}

t.test('createCluster › valid › on moto: launch template with profile, groups, public address and user data; group on version 1 in the default subnets; capacity provider; cluster', { skip }, async (t) => {
  const { group } = await onMoto()

  const { cluster, job } = await activeCluster()

  t.match(job, { state: 'succeeded', error_code: null }, job.message ?? '')
  const [version] = (await ec2.send(new DescribeLaunchTemplateVersionsCommand({ LaunchTemplateName: cluster.name }))).LaunchTemplateVersions ?? []
  t.match(version, {
    VersionNumber: 1,
    LaunchTemplateData: {
      ImageId: ami,
      InstanceType: 'g4dn.xlarge',
      IamInstanceProfile: { Name: testInstanceProfile },
      NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: true, Groups: [group] }],
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 }
    }
  })
  const userData = Buffer.from(version?.LaunchTemplateData?.UserData ?? '', 'base64').toString('utf8')
  t.match(userData, `ECS_CLUSTER=${cluster.name}\n`)
  t.match(userData, 'EnvironmentFile=/etc/fractal/host-agent.env', 'the agent\'s unit reads its environment from a file')
  t.match(userData, `FRACTAL_API_URL=${testPublicUrl}\n`)
  t.match(userData, 'FRACTAL_HANDSHAKE=identity-document\n')
  t.notMatch(userData, /SECRET/, 'no secret in the user data')

  const defaults = (await ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }))).Subnets ?? []
  const [made] = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [cluster.name] }))).AutoScalingGroups ?? []
  t.match(made, { MinSize: 1, MaxSize: 3, NewInstancesProtectedFromScaleIn: true, LaunchTemplate: { LaunchTemplateName: cluster.name, Version: '1' } })
  t.same(made?.VPCZoneIdentifier?.split(',').sort(), defaults.map((s) => s.SubnetId).sort(), 'FLEET_SUBNETS unset: the default VPC\'s default subnets')

  const capacityProvider = `${cluster.name}-capacity`
  const [cp] = (await ecs.send(new DescribeCapacityProvidersCommand({ capacityProviders: [capacityProvider] }))).capacityProviders ?? []
  t.match(cp, { status: 'ACTIVE', autoScalingGroupProvider: { autoScalingGroupArn: made?.AutoScalingGroupARN, managedScaling: { status: 'ENABLED' }, managedTerminationProtection: 'ENABLED' } })
  const [ecsCluster] = (await ecs.send(new DescribeClustersCommand({ clusters: [cluster.name] }))).clusters ?? []
  t.match(ecsCluster, { status: 'ACTIVE', capacityProviders: [capacityProvider], defaultCapacityProviderStrategy: [{ capacityProvider }] })
})

t.test('updateCluster › valid › on moto: the group takes the new sizes', { skip }, async (t) => {
  const { app, headers } = await onMoto()
  const { cluster } = await activeCluster()

  const res = await app.inject({ method: 'PATCH', url: `/v1/admin/clusters/${cluster.id}`, payload: { minSize: 0, maxSize: 5 }, headers })

  t.equal(res.statusCode, 200, res.body)
  const [made] = (await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [cluster.name] }))).AutoScalingGroups ?? []
  t.match(made, { MinSize: 0, MaxSize: 5 })
})

t.test('deleteCluster › valid › on moto: the group drained to zero, then cluster, capacity provider, group and launch template are gone', { skip }, async (t) => {
  const { app, headers } = await onMoto()
  const { cluster } = await activeCluster()

  const res = await app.inject({ method: 'DELETE', url: `/v1/admin/clusters/${cluster.id}`, headers })

  t.equal(res.statusCode, 202, res.body)
  const jobId = res.json().job.id as string
  const readJob = () => app.db.selectFrom('job').selectAll().where('id', '=', jobId).executeTakeFirstOrThrow()
  t.ok(await until(async () => ['succeeded', 'failed'].includes((await readJob()).state)))
  t.match(await readJob(), { state: 'succeeded' })
  t.same((await asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [cluster.name] }))).AutoScalingGroups, [])
  const clusters = (await ecs.send(new DescribeClustersCommand({ clusters: [cluster.name] }))).clusters ?? []
  t.ok(clusters.every((c) => c.status === 'INACTIVE'), 'the ECS cluster is gone')
  const providers = (await ecs.send(new DescribeCapacityProvidersCommand({ capacityProviders: [`${cluster.name}-capacity`] }))).capacityProviders ?? []
  t.ok(providers.every((c) => c.status === 'INACTIVE'), 'the capacity provider is gone')
  await t.rejects(ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [cluster.name] })), /does not exist|NotFound/i, 'the launch template is gone')
})
