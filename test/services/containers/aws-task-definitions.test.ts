// DescribeTaskDefinition through the real SDK client, cut at its boundary (aws-sdk-client-mock): what the
// catalog's validation asks before it lets an app run on a task definition.
import t from 'tap'
import { mockClient } from 'aws-sdk-client-mock'
import { DescribeTaskDefinitionCommand, ECSClient, ClientException, type DescribeTaskDefinitionCommandInput } from '@aws-sdk/client-ecs'
import { createAwsProvider } from '../../../services/containers/aws-provider.js'

t.test('aws provider › describeTaskDefinition › active is found, inactive or unknown is null, a throttle is thrown', async (t) => {
  const ecs = mockClient(ECSClient)
  t.teardown(() => ecs.restore())
  ecs.on(DescribeTaskDefinitionCommand, { taskDefinition: 'fractal-chrome' }).resolves({ taskDefinition: { family: 'fractal-chrome', revision: 7, status: 'ACTIVE' } })
  ecs.on(DescribeTaskDefinitionCommand, { taskDefinition: 'fractal-chrome:2' }).resolves({ taskDefinition: { family: 'fractal-chrome', revision: 2, status: 'INACTIVE' } })
  ecs.on(DescribeTaskDefinitionCommand, { taskDefinition: 'fractal-nope' }).rejects(new ClientException({ message: 'Unable to describe task definition.', $metadata: {} }))
  ecs.on(DescribeTaskDefinitionCommand, { taskDefinition: 'fractal-busy' }).rejects(Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException' }))
  const provider = createAwsProvider({ containerName: 'fractal-container', maxAttempts: 1 })

  t.same(await provider.describeTaskDefinition('eu-west-1', 'fractal-chrome'), { family: 'fractal-chrome', revision: 7 })
  t.equal(await provider.describeTaskDefinition('eu-west-1', 'fractal-chrome:2'), null, 'deregistered: RunTask would refuse it')
  t.equal(await provider.describeTaskDefinition('eu-west-1', 'fractal-nope'), null)
  await t.rejects(provider.describeTaskDefinition('eu-west-1', 'fractal-busy'), { name: 'ThrottlingException' }, 'not mistaken for unknown')
  const asked = ecs.commandCalls(DescribeTaskDefinitionCommand).map((c) => (c.args[0].input as DescribeTaskDefinitionCommandInput).taskDefinition)
  t.same(asked, ['fractal-chrome', 'fractal-chrome:2', 'fractal-nope', 'fractal-busy'])
})
