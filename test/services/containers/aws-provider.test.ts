// The ECS provider's polling cost (issue 19), against the SDK-boundary model (test/helpers/ecs-model.ts):
// the DescribeTasks of one cluster asked at about the same time go as one call (up to 100 tasks, as
// https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html allows), each cluster
// its own; a host's address is looked up once per container instance, concurrent asks included.
import t from 'tap'
import type { DescribeTasksCommandInput } from '@aws-sdk/client-ecs'
import { createAwsProvider } from '../../../services/containers/aws-provider.js'
import { ecsModel } from '../../helpers/ecs-model.js'

const region = 'us-east-1'
const spec = (containerId: string, cluster: string) => ({
  containerId, region, cluster, capacityProvider: null, taskDefinition: 'fractal-chrome:1', environment: {}
})

t.test('aws provider › describeTask › concurrent asks about one cluster share DescribeTasks calls; another cluster has its own', async (t) => {
  const model = ecsModel({ pendingPolls: 0 })
  t.teardown(() => model.restore())
  model.addCluster('a', { instances: 2 })
  model.addCluster('b')
  const provider = createAwsProvider({ containerName: 'fractal-container', maxAttempts: 1 })
  const inA = await Promise.all(['c1', 'c2', 'c3', 'c4', 'c5'].map(async (id) => (await provider.runTask(spec(id, 'a'))).taskArn))
  const inB = (await provider.runTask(spec('c6', 'b'))).taskArn

  const statuses = await Promise.all([...inA.map((arn) => provider.describeTask(region, 'a', arn)), provider.describeTask(region, 'b', inB)])

  t.ok(statuses.every((s) => s.state === 'running'), 'every task answered')
  const calls = model.received<DescribeTasksCommandInput>('DescribeTasks')
  t.same(calls.map((c) => [c.cluster, c.tasks!.length]).sort(), [['a', 1], ['a', 4], ['b', 1]], 'the first alone at once, the four asked meanwhile together')
  t.equal(model.calls('DescribeContainerInstances'), 3, 'one look-up per host: two in a, one in b')
  t.equal(model.calls('DescribeInstances'), 3)
})

t.test('aws provider › describeTask › a task missing from the answer is stopped; the same task asked twice in a batch is sent once', async (t) => {
  const model = ecsModel({ pendingPolls: 0 })
  t.teardown(() => model.restore())
  model.addCluster('a')
  const provider = createAwsProvider({ containerName: 'fractal-container', maxAttempts: 1 })
  const { taskArn } = await provider.runTask(spec('c1', 'a'))
  await provider.describeTask(region, 'a', taskArn)
  const missing = `arn:aws:ecs:${region}:000000000000:task/a/ffffffffffffffffffffffffffffffff`

  const [x, y, z] = await Promise.all([provider.describeTask(region, 'a', taskArn), provider.describeTask(region, 'a', taskArn), provider.describeTask(region, 'a', missing)])

  t.match(x, { state: 'running' })
  t.match(y, { state: 'running' })
  t.same(z, { state: 'stopped', reason: 'the task is missing from ECS' })
  t.same(model.received<DescribeTasksCommandInput>('DescribeTasks').at(-1)?.tasks, [taskArn, missing])
})

t.test('aws provider › describeTask › the address cache keeps addressCacheSize hosts; a failed look-up is asked again, not kept', async (t) => {
  const model = ecsModel({ pendingPolls: 0 })
  t.teardown(() => model.restore())
  model.addCluster('a', { instances: 2 })
  const provider = createAwsProvider({ containerName: 'fractal-container', maxAttempts: 1, addressCacheSize: 1 })
  const [first, second] = [(await provider.runTask(spec('c1', 'a'))).taskArn, (await provider.runTask(spec('c2', 'a'))).taskArn]
  model.throttle('DescribeContainerInstances', 1)

  await t.rejects(provider.describeTask(region, 'a', first), { name: 'ThrottlingException' })
  t.match(await provider.describeTask(region, 'a', first), { state: 'running' }, 'asked again after the failure')
  t.match(await provider.describeTask(region, 'a', first), { state: 'running' })
  t.equal(model.calls('DescribeContainerInstances'), 2, 'the throttled look-up and the one kept')
  await provider.describeTask(region, 'a', second)
  await provider.describeTask(region, 'a', first)
  t.equal(model.calls('DescribeContainerInstances'), 4, 'with room for one host, the other host pushed it out')
})
