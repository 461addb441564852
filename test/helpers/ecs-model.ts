// A small stateful model of ECS and EC2, cut at the SDK boundary with aws-sdk-client-mock: the product's real
// ECSClient/EC2Client send their real commands, and this answers them the way the services would (tasks go
// PROVISIONING → RUNNING, RunTask is idempotent per clientToken, ListTasks hides stopped tasks, …). A test
// can make calls throttle or fail, stop a task while it starts, or lose a RunTask answer, then look at the
// tasks and the calls the app made.
import {
  ClusterNotFoundException, DescribeContainerInstancesCommand, DescribeTasksCommand, ECSClient, ECSServiceException,
  InvalidParameterException, ListTasksCommand, RunTaskCommand, ServerException, StopTaskCommand,
  type DescribeContainerInstancesCommandInput, type DescribeTasksCommandInput, type ListTasksCommandInput,
  type RunTaskCommandInput, type StopTaskCommandInput, type Task
} from '@aws-sdk/client-ecs'
import { DescribeInstancesCommand, EC2Client, EC2ServiceException, type DescribeInstancesCommandInput } from '@aws-sdk/client-ec2'
import { mockClient } from 'aws-sdk-client-mock'

export type EcsCommandName = 'RunTask' | 'DescribeTasks' | 'ListTasks' | 'StopTask' | 'DescribeContainerInstances' | 'DescribeInstances'

export interface ModelInstance { containerInstanceArn: string, ec2InstanceId: string, publicIp: string, privateIp: string }

export interface ModelTask {
  taskArn: string
  /** The cluster's name (the app passes names, not ARNs). */
  cluster: string
  /** The region of the client that started it (null for tasks the test added). */
  region: string | null
  startedBy: string | null
  clientToken: string | null
  status: 'PROVISIONING' | 'RUNNING' | 'STOPPED'
  stoppedReason: string | null
  createdAt: Date
  /** What RunTask received (null for tasks the test added). */
  input: RunTaskCommandInput | null
  /** Where it runs, and the host ports of 32262/tcp, 32263/udp, 32273/tcp. */
  instance: ModelInstance
  hostPorts: { tcp32262: number, udp32263: number, tcp32273: number }
  /** DescribeTasks answers seen while PROVISIONING. */
  polls: number
}

interface ModelCluster { name: string, instances: ModelInstance[] }

const account = '000000000000'

/** The error the SDK throws for a throttled call (ECS answers it as a generic AWS error, not a modelled one). */
export function throttlingError (service: 'ecs' | 'ec2' = 'ecs'): Error {
  const Base = service === 'ecs' ? ECSServiceException : EC2ServiceException
  const err = new Base({ name: 'ThrottlingException', $fault: 'client', $metadata: { httpStatusCode: 400, attempts: 1 }, message: 'Rate exceeded' })
  return Object.assign(err, { $retryable: { throttling: true } })
}

export function serverError (service: 'ecs' | 'ec2' = 'ecs'): Error {
  if (service === 'ecs') return new ServerException({ message: 'Service unavailable, please try again', $metadata: { httpStatusCode: 500, attempts: 1 } })
  return new EC2ServiceException({ name: 'ServerException', $fault: 'server', $metadata: { httpStatusCode: 500, attempts: 1 }, message: 'An internal error has occurred' })
}

/**
 * Starts the model: from now until `restore()` every ECSClient and EC2Client in this process talks to it.
 * `pendingPolls`: how many DescribeTasks see a new task PROVISIONING before it is RUNNING (default 1).
 */
export function ecsModel (options: { pendingPolls?: number } = {}) {
  const pendingPolls = options.pendingPolls ?? 1
  const ecs = mockClient(ECSClient)
  const ec2 = mockClient(EC2Client)
  const clusters = new Map<string, ModelCluster>()
  const tasks: ModelTask[] = []
  const counts = new Map<EcsCommandName, number>()
  const inputs = new Map<EcsCommandName, unknown[]>()
  const faults = new Map<EcsCommandName, Array<() => Error>>()
  const stopsWhileStarting: string[] = []
  let crashesAfterRunTask = 0
  let nextInstance = 0
  let nextTask = 0

  const clusterName = (ref: string | undefined) => (ref ?? 'default').replace(/^arn:aws:ecs:[^:]*:\d+:cluster\//, '')
  const clusterOf = (ref: string | undefined) => {
    const cluster = clusters.get(clusterName(ref))
    if (!cluster) throw new ClusterNotFoundException({ message: 'Cluster not found.', $metadata: { httpStatusCode: 400, attempts: 1 } })
    return cluster
  }
  const newInstance = (cluster: string): ModelInstance => {
    const n = nextInstance++
    return {
      containerInstanceArn: `arn:aws:ecs:model:${account}:container-instance/${cluster}/${(n + 1).toString(16).padStart(32, '0')}`,
      ec2InstanceId: `i-${(0xa00000 + n).toString(16).padStart(17, '0')}`,
      publicIp: `198.51.100.${(n % 250) + 1}`,
      privateIp: `10.0.${Math.floor(n / 250)}.${(n % 250) + 1}`
    }
  }
  const newTask = (cluster: ModelCluster, fields: Pick<ModelTask, 'region' | 'startedBy' | 'clientToken' | 'status' | 'input' | 'createdAt'>): ModelTask => {
    const n = nextTask++
    const task: ModelTask = {
      ...fields,
      taskArn: `arn:aws:ecs:${fields.region ?? 'model'}:${account}:task/${cluster.name}/${(n + 1).toString(16).padStart(32, '0')}`,
      cluster: cluster.name,
      stoppedReason: null,
      instance: cluster.instances[n % cluster.instances.length]!,
      hostPorts: { tcp32262: 32768 + n * 3, udp32263: 32769 + n * 3, tcp32273: 32770 + n * 3 },
      polls: 0
    }
    tasks.push(task)
    return task
  }

  /** Counts the call and records its input; throws a fault queued for this command, if any. */
  const enter = (name: EcsCommandName, input: unknown) => {
    counts.set(name, (counts.get(name) ?? 0) + 1)
    inputs.set(name, [...(inputs.get(name) ?? []), input])
    const fault = faults.get(name)?.shift()
    if (fault) throw fault()
  }
  const queueFaults = (name: EcsCommandName, times: number, make: () => Error) => {
    faults.set(name, [...(faults.get(name) ?? []), ...Array.from({ length: times }, () => make)])
  }

  /** A task as DescribeTasks shows it; a PROVISIONING one moves on as it is looked at. */
  const shown = (task: ModelTask): Task => {
    if (task.status === 'PROVISIONING') {
      if (task.polls >= pendingPolls) {
        const reason = stopsWhileStarting.shift()
        // An empty reason is a reason ECS may give: "" (moto's too).
        if (reason !== undefined) {
          task.status = 'STOPPED'
          task.stoppedReason = reason
        } else {
          task.status = 'RUNNING'
        }
      } else {
        task.polls++
      }
    }
    const containerName = task.input?.overrides?.containerOverrides?.[0]?.name ?? 'fractal-container'
    const running = task.status === 'RUNNING'
    return {
      taskArn: task.taskArn,
      clusterArn: `arn:aws:ecs:${task.region ?? 'model'}:${account}:cluster/${task.cluster}`,
      taskDefinitionArn: `arn:aws:ecs:${task.region ?? 'model'}:${account}:task-definition/${task.input?.taskDefinition ?? 'unknown:1'}`,
      lastStatus: task.status,
      desiredStatus: task.status === 'STOPPED' ? 'STOPPED' : 'RUNNING',
      startedBy: task.startedBy ?? undefined,
      createdAt: task.createdAt,
      ...(task.status === 'PROVISIONING' ? {} : { containerInstanceArn: task.instance.containerInstanceArn }),
      ...(task.status === 'STOPPED' ? { stoppedReason: task.stoppedReason ?? undefined, stopCode: 'TaskFailedToStart' as const } : {}),
      containers: [{
        name: containerName,
        lastStatus: task.status,
        ...(task.status === 'STOPPED' && task.stoppedReason ? { reason: task.stoppedReason } : {}),
        networkBindings: running
          ? [
              { bindIP: '0.0.0.0', containerPort: 32262, hostPort: task.hostPorts.tcp32262, protocol: 'tcp' },
              { bindIP: '0.0.0.0', containerPort: 32263, hostPort: task.hostPorts.udp32263, protocol: 'udp' },
              { bindIP: '0.0.0.0', containerPort: 32273, hostPort: task.hostPorts.tcp32273, protocol: 'tcp' }
            ]
          : []
      }]
    }
  }

  ecs.on(RunTaskCommand).callsFake(async (input: RunTaskCommandInput, getClient) => {
    enter('RunTask', input)
    const cluster = clusterOf(input.cluster)
    const again = input.clientToken ? tasks.find((t) => t.clientToken === input.clientToken && t.cluster === cluster.name) : undefined
    if (again) return { tasks: [shown(again)], failures: [], $metadata: {} }
    if (cluster.instances.length === 0) return { tasks: [], failures: [{ reason: 'RESOURCE:CPU', detail: 'no container instance has room' }], $metadata: {} }
    const region = await getClient().config.region()
    const task = newTask(cluster, { region, startedBy: input.startedBy ?? null, clientToken: input.clientToken ?? null, status: 'PROVISIONING', input, createdAt: new Date() })
    if (crashesAfterRunTask > 0) {
      crashesAfterRunTask--
      // The task exists; the answer never reaches the worker.
      throw new Error('the worker lost the RunTask answer')
    }
    return { tasks: [shown(task)], failures: [], $metadata: {} }
  })

  ecs.on(DescribeTasksCommand).callsFake(async (input: DescribeTasksCommandInput) => {
    enter('DescribeTasks', input)
    const cluster = clusterOf(input.cluster)
    const found: Task[] = []
    const failures = []
    for (const arn of input.tasks ?? []) {
      const task = tasks.find((t) => t.taskArn === arn && t.cluster === cluster.name)
      if (task) found.push(shown(task))
      else failures.push({ arn, reason: 'MISSING' })
    }
    return { tasks: found, failures, $metadata: {} }
  })

  ecs.on(ListTasksCommand).callsFake(async (input: ListTasksCommandInput) => {
    enter('ListTasks', input)
    const cluster = clusterOf(input.cluster)
    const wanted = input.desiredStatus ?? 'RUNNING'
    const arns = tasks.filter((t) => t.cluster === cluster.name && (wanted === 'STOPPED') === (t.status === 'STOPPED'))
      .filter((t) => input.startedBy === undefined || t.startedBy === input.startedBy)
      .map((t) => t.taskArn)
    const from = Number(input.nextToken ?? 0)
    const size = input.maxResults ?? 100
    const page = arns.slice(from, from + size)
    return { taskArns: page, ...(from + size < arns.length ? { nextToken: String(from + size) } : {}), $metadata: {} }
  })

  ecs.on(StopTaskCommand).callsFake(async (input: StopTaskCommandInput) => {
    enter('StopTask', input)
    const cluster = clusterOf(input.cluster)
    const task = tasks.find((t) => t.taskArn === input.task && t.cluster === cluster.name)
    if (!task) throw new InvalidParameterException({ message: 'The referenced task was not found.', $metadata: { httpStatusCode: 400, attempts: 1 } })
    if (task.status !== 'STOPPED') {
      task.status = 'STOPPED'
      task.stoppedReason = input.reason ?? 'Task stopped by user'
    }
    return { task: shown(task), $metadata: {} }
  })

  ecs.on(DescribeContainerInstancesCommand).callsFake(async (input: DescribeContainerInstancesCommandInput) => {
    enter('DescribeContainerInstances', input)
    const cluster = clusterOf(input.cluster)
    const found = []
    const failures = []
    for (const arn of input.containerInstances ?? []) {
      const instance = cluster.instances.find((i) => i.containerInstanceArn === arn)
      if (instance) found.push({ containerInstanceArn: instance.containerInstanceArn, ec2InstanceId: instance.ec2InstanceId, status: 'ACTIVE', agentConnected: true })
      else failures.push({ arn, reason: 'MISSING' })
    }
    return { containerInstances: found, failures, $metadata: {} }
  })

  ec2.on(DescribeInstancesCommand).callsFake(async (input: DescribeInstancesCommandInput) => {
    enter('DescribeInstances', input)
    const all = [...clusters.values()].flatMap((c) => c.instances)
    const found = (input.InstanceIds ?? []).map((id) => all.find((i) => i.ec2InstanceId === id)).filter((i) => i !== undefined)
    return {
      Reservations: found.length === 0
        ? []
        : [{ Instances: found.map((i) => ({ InstanceId: i.ec2InstanceId, PublicIpAddress: i.publicIp, PrivateIpAddress: i.privateIp, State: { Code: 16, Name: 'running' as const } })) }],
      $metadata: {}
    }
  })

  return {
    /** A cluster the app may use (the `cluster` table names it); `instances` EC2 hosts in it (default 1). */
    addCluster (name: string, fields: { instances?: number } = {}) {
      const cluster: ModelCluster = { name, instances: [] }
      for (let i = 0; i < (fields.instances ?? 1); i++) cluster.instances.push(newInstance(name))
      clusters.set(name, cluster)
      return cluster
    },
    /** Every task ever started or added, stopped ones included. */
    tasks,
    /** The tasks started for one container (RunTask's startedBy). */
    tasksOf (containerId: string) {
      return tasks.filter((t) => t.startedBy === containerId)
    },
    /** The container's environment as RunTask handed it over (FRACTAL_CONTAINER_SECRET, …). */
    environmentOf (task: ModelTask): Record<string, string> {
      const env = task.input?.overrides?.containerOverrides?.[0]?.environment ?? []
      return Object.fromEntries(env.map((e) => [e.name ?? '', e.value ?? '']))
    },
    /** How many times the app sent this command (failed calls included). */
    calls (name: EcsCommandName) {
      return counts.get(name) ?? 0
    },
    /** The inputs of every call of this command, in order. */
    received<T = Record<string, unknown>> (name: EcsCommandName): T[] {
      return (inputs.get(name) ?? []) as T[]
    },
    /** The next `times` calls of the command throw the SDK's throttling error. */
    throttle (name: EcsCommandName, times: number) {
      queueFaults(name, times, () => throttlingError(name === 'DescribeInstances' ? 'ec2' : 'ecs'))
    },
    /** The next `times` calls of the command throw a 500 ServerException. */
    serverError (name: EcsCommandName, times: number) {
      queueFaults(name, times, () => serverError(name === 'DescribeInstances' ? 'ec2' : 'ecs'))
    },
    /** The next task that would become RUNNING stops instead, with this reason ('' as ECS sometimes gives). */
    stopWhileStarting (reason: string) {
      stopsWhileStarting.push(reason)
    },
    /** ECS stops a task by itself (its essential container exited, its host went away). */
    exit (task: ModelTask, reason: string) {
      task.status = 'STOPPED'
      task.stoppedReason = reason
    },
    /** The next `times` RunTask calls start their task, then throw a plain Error (the answer is lost). */
    crashAfterRunTask (times: number) {
      crashesAfterRunTask += times
    },
    /** A RUNNING task the app did not start through RunTask (another deploy, a leftover of a crash). */
    addOrphan (cluster: string, fields: { startedBy?: string | null, createdAt?: Date } = {}) {
      const c = clusters.get(cluster)
      if (!c || c.instances.length === 0) throw new Error(`ecs-model: no cluster ${cluster} with an instance; addCluster first`)
      return newTask(c, { region: null, startedBy: fields.startedBy ?? null, clientToken: null, status: 'RUNNING', input: null, createdAt: fields.createdAt ?? new Date() })
    },
    restore () {
      ecs.restore()
      ec2.restore()
    }
  }
}

export type EcsModel = ReturnType<typeof ecsModel>
