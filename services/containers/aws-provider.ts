import {
  DescribeContainerInstancesCommand, DescribeTaskDefinitionCommand, DescribeTasksCommand, ECSClient, ListTasksCommand, RunTaskCommand, StopTaskCommand,
  paginateListTasks, type Task
} from '@aws-sdk/client-ecs'
import { DescribeInstancesCommand, EC2Client } from '@aws-sdk/client-ec2'
import { Batcher } from '../batcher.js'
import type { CloudProvider, HostPorts, TaskStatus } from './provider.js'

export interface AwsProviderOptions {
  /** The container's name in the task definitions (the one the overrides address). */
  containerName: string
  /** The SDK's own retries per call (throttling and 5xx, with backoff and jitter); the start job retries beyond. */
  maxAttempts: number
  /** Host addresses kept (one per container instance); the oldest goes beyond. Default 10,000. */
  addressCacheSize?: number
}

/** ECS states before RUNNING: the task is still being placed, provisioned or pulled. */
const pendingStates = new Set(['PROVISIONING', 'PENDING', 'ACTIVATING'])
const ports: Array<[keyof HostPorts, number, 'tcp' | 'udp']> = [['tcp32262', 32262, 'tcp'], ['udp32263', 32263, 'udp'], ['tcp32273', 32273, 'tcp']]

/** A task found in a failure list or missing: ECS answers those in the body, not as errors. */
class TaskFailure extends Error {
  override name = 'TaskFailure'
}

/** DescribeTasks takes at most 100 tasks (https://docs.aws.amazon.com/AmazonECS/latest/APIReference/API_DescribeTasks.html). */
const describeBatch = 100

/** Why ECS stopped a task, in its words, or that it gave none (an empty stoppedReason is not a reason). */
function stopReason (task: Task, status: string): string {
  const given = task.stoppedReason?.trim() || task.containers?.map((c) => c.reason?.trim()).find(Boolean)
  if (given) return given
  return `ECS gave no reason (the task is ${status.toLowerCase()}${task.stopCode ? `, stop code ${task.stopCode}` : ''})`
}

/**
 * ECS through the official v3 SDK, one client per region (created once, reused). RunTask is idempotent twice
 * over: we look for a task `startedBy` the container first, and pass the container id as `clientToken`.
 * Polling is kept cheap: the DescribeTasks of one cluster made at about the same time (by concurrent start
 * jobs of this process) go as one call of up to 100 tasks, and a host's address is looked up once per
 * container instance (DescribeContainerInstances + EC2 DescribeInstances) and kept: it does not change
 * while the instance lives.
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

  // One batcher per cluster: a call alone leaves at once; the calls that come while one is in flight leave
  // together next (services/batcher.ts).
  const describers = new Map<string, Batcher<string, Task | undefined>>()
  function describe (region: string, cluster: string, taskArn: string): Promise<Task | undefined> {
    const key = `${region} ${cluster}`
    let batcher = describers.get(key)
    if (!batcher) {
      describers.set(key, batcher = new Batcher(async (arns: string[]) => {
        const out = await ecs(region).send(new DescribeTasksCommand({ cluster, tasks: [...new Set(arns)] }))
        const byArn = new Map((out.tasks ?? []).map((t) => [t.taskArn, t]))
        return arns.map((arn) => byArn.get(arn))
      }, { maxSize: describeBatch, maxInFlight: 1 }))
    }
    return batcher.submit(taskArn)
  }

  const addresses = new Map<string, Promise<{ hostIp: string, hostInstanceId: string }>>()
  const cacheSize = options.addressCacheSize ?? 10_000
  function hostOf (region: string, cluster: string, task: Task): Promise<{ hostIp: string, hostInstanceId: string }> {
    const arn = task.containerInstanceArn
    if (!arn) return Promise.reject(new TaskFailure('the running task has no container instance'))
    const key = `${region} ${arn}`
    let address = addresses.get(key)
    if (!address) {
      address = (async () => {
        const instances = await ecs(region).send(new DescribeContainerInstancesCommand({ cluster, containerInstances: [arn] }))
        const instanceId = instances.containerInstances?.[0]?.ec2InstanceId
        if (!instanceId) throw new TaskFailure(`container instance ${arn} has no EC2 instance`)
        const described = await ec2(region).send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
        const instance = described.Reservations?.[0]?.Instances?.[0]
        const ip = instance?.PublicIpAddress ?? instance?.PrivateIpAddress
        if (!ip) throw new TaskFailure(`EC2 instance ${instanceId} has no IP address`)
        return { hostIp: ip, hostInstanceId: instanceId }
      })()
      addresses.set(key, address)
      if (addresses.size > cacheSize) addresses.delete(addresses.keys().next().value!)
      // A failed look-up is not kept: the next poll asks again.
      address.catch(() => { if (addresses.get(key) === address) addresses.delete(key) })
    }
    return address
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
      if (status !== 'RUNNING') return { state: 'stopped', reason: stopReason(task, status) }
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
      for await (const page of paginateListTasks({ client: ecs(region), pageSize: 100 }, { cluster, desiredStatus: 'RUNNING' })) arns.push(...(page.taskArns ?? []))
      const tasks = []
      for (let i = 0; i < arns.length; i += describeBatch) {
        const out = await ecs(region).send(new DescribeTasksCommand({ cluster, tasks: arns.slice(i, i + describeBatch) }))
        for (const t of out.tasks ?? []) tasks.push({ taskArn: t.taskArn!, startedBy: t.startedBy ?? null, createdAt: t.createdAt ?? null })
      }
      return tasks
    },

    async describeTaskDefinition (region, ref) {
      try {
        const out = await ecs(region).send(new DescribeTaskDefinitionCommand({ taskDefinition: ref }))
        const found = out.taskDefinition
        // An INACTIVE (deregistered) revision is still described, but RunTask refuses it.
        if (!found?.family || found.revision === undefined || found.status !== 'ACTIVE') return null
        return { family: found.family, revision: found.revision }
      } catch (err) {
        // ECS answers an unknown family or revision with a ClientException ("Unable to describe task definition").
        if ((err as { name?: string }).name === 'ClientException') return null
        throw err
      }
    }
  }
}
