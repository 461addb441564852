import {
  DescribeContainerInstancesCommand, DescribeTasksCommand, ECSClient, ListTasksCommand, RunTaskCommand, StopTaskCommand,
  paginateListTasks, type Task
} from '@aws-sdk/client-ecs'
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2'
import type { CloudProvider, HostPorts, TaskStatus } from './provider.js'

export interface AwsProviderOptions {
  /** The container's name in the task definitions (the one the overrides address). */
  containerName: string
  /** The SDK's own retries per call (throttling and 5xx, with backoff and jitter); the start job retries beyond. */
  maxAttempts: number
}

/** ECS states before RUNNING: the task is still being placed, provisioned or pulled. */
const pendingStates = new Set(['PROVISIONING', 'PENDING', 'ACTIVATING'])
const ports: Array<[keyof HostPorts, number, 'tcp' | 'udp']> = [['tcp32262', 32262, 'tcp'], ['udp32263', 32263, 'udp'], ['tcp32273', 32273, 'tcp']]

/** A task found in a failure list or missing: ECS answers those in the body, not as errors. */
class TaskFailure extends Error {
  override name = 'TaskFailure'
}

/**
 * ECS through the official v3 SDK, one client per region (created once, reused). RunTask is idempotent twice
 * over: we look for a task `startedBy` the container first, and pass the container id as `clientToken`.
 */
export function createAwsProvider (options: AwsProviderOptions): CloudProvider {
  const ecsClients = new Map<string, ECSClient>()
  const ec2Clients = new Map<string, EC2Client>()
  const ecs = (region: string) => {
    let client = ecsClients.get(region)
    if (!client) ecsClients.set(region, client = new ECSClient({ region, maxAttempts: options.maxAttempts }))
    return client
  }
  const ec2 = (region: string) => {
    let client = ec2Clients.get(region)
    if (!client) ec2Clients.set(region, client = new EC2Client({ region, maxAttempts: options.maxAttempts }))
    return client
  }

  async function describe (region: string, cluster: string, taskArn: string): Promise<Task | undefined> {
    const out = await ecs(region).send(new DescribeTasksCommand({ cluster, tasks: [taskArn] }))
    return out.tasks?.[0]
  }

  async function hostOf (region: string, cluster: string, task: Task): Promise<{ hostIp: string, hostInstanceId: string }> {
    if (!task.containerInstanceArn) throw new TaskFailure('the running task has no container instance')
    const instances = await ecs(region).send(new DescribeContainerInstancesCommand({ cluster, containerInstances: [task.containerInstanceArn] }))
    const instanceId = instances.containerInstances?.[0]?.ec2InstanceId
    if (!instanceId) throw new TaskFailure(`container instance ${task.containerInstanceArn} has no EC2 instance`)
    const described = await ec2(region).send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
    const instance = described.Reservations?.[0]?.Instances?.[0]
    const ip = instance?.PublicIpAddress ?? instance?.PrivateIpAddress
    if (!ip) throw new TaskFailure(`EC2 instance ${instanceId} has no IP address`)
    return { hostIp: ip, hostInstanceId: instanceId }
  }

  return {
    kind: 'aws',
    async runTask (spec) {
      const found = await ecs(spec.region).send(new ListTasksCommand({ cluster: spec.cluster, startedBy: spec.containerId }))
      if (found.taskArns?.[0]) return { taskArn: found.taskArns[0] }
      const out = await ecs(spec.region).send(new RunTaskCommand({
        cluster: spec.cluster,
        taskDefinition: spec.taskDefinition,
        count: 1,
        startedBy: spec.containerId,
        clientToken: spec.containerId,
        ...(spec.capacityProvider ? { capacityProviderStrategy: [{ capacityProvider: spec.capacityProvider, weight: 1 }] } : {}),
        overrides: {
          containerOverrides: [{
            name: options.containerName,
            environment: Object.entries(spec.environment).map(([name, value]) => ({ name, value }))
          }]
        },
        tags: [{ key: 'fractal:container', value: spec.containerId }],
        enableECSManagedTags: true,
        propagateTags: 'TASK_DEFINITION'
      }))
      const taskArn = out.tasks?.[0]?.taskArn
      if (!taskArn) {
        const failure = out.failures?.[0]
        throw new TaskFailure(`ECS did not place the task: ${failure?.reason ?? 'no reason given'}${failure?.detail ? ` (${failure.detail})` : ''}`)
      }
      return { taskArn }
    },

    async describeTask (region, cluster, taskArn): Promise<TaskStatus> {
      const task = await describe(region, cluster, taskArn)
      if (!task) return { state: 'stopped', reason: 'the task is missing from ECS' }
      const status = task.lastStatus ?? 'PENDING'
      if (pendingStates.has(status)) return { state: 'pending' }
      if (status !== 'RUNNING') {
        const container = task.containers?.find((c) => c.reason)
        return { state: 'stopped', reason: task.stoppedReason ?? container?.reason ?? `the task is ${status.toLowerCase()}` }
      }
      const bindings = task.containers?.flatMap((c) => c.networkBindings ?? []) ?? []
      const hostPorts = {} as HostPorts
      for (const [key, port, protocol] of ports) {
        const binding = bindings.find((b) => b.containerPort === port && (b.protocol ?? 'tcp') === protocol)
        if (!binding?.hostPort) return { state: 'stopped', reason: `the task exposes no host port for ${port}/${protocol}` }
        hostPorts[key] = binding.hostPort
      }
      return { state: 'running', ...await hostOf(region, cluster, task), ports: hostPorts }
    },

    async stopTask (region, cluster, taskArn, reason) {
      await ecs(region).send(new StopTaskCommand({ cluster, task: taskArn, reason: reason.slice(0, 255) }))
    },

    async listTasks (region, cluster) {
      const arns: string[] = []
      for await (const page of paginateListTasks({ client: ecs(region), pageSize: 100 }, { cluster })) arns.push(...(page.taskArns ?? []))
      const tasks = []
      for (let i = 0; i < arns.length; i += 100) {
        const out = await ecs(region).send(new DescribeTasksCommand({ cluster, tasks: arns.slice(i, i + 100) }))
        for (const t of out.tasks ?? []) tasks.push({ taskArn: t.taskArn!, startedBy: t.startedBy ?? null, createdAt: t.createdAt ?? null })
      }
      return tasks
    }
  }
}
