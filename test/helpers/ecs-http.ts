// ECS and EC2 played at the HTTP boundary, for processes of their own (a worker under test): the product's
// real SDK clients, with their real signing, retries and (de)serialisation, pointed here through
// AWS_ENDPOINT_URL_ECS / AWS_ENDPOINT_URL_EC2 (`env`). ECS speaks awsJson1_1 (POST / with X-Amz-Target),
// EC2 the query protocol with XML answers. A test can make calls fail (500 InternalFailure, 400
// ThrottlingException, 400 AccessDeniedException) a number of times or until healed, hold an answer back
// (the worker dies while it waits), and look at the tasks and calls. In-process tests use the SDK-boundary
// model instead (ecs-model.ts). Tasks stay PROVISIONING for `pendingMs`, then run.
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export type HttpCommand = 'RunTask' | 'DescribeTasks' | 'ListTasks' | 'StopTask' | 'DescribeContainerInstances' | 'DescribeInstances'
export type FaultKind = 'internal' | 'throttle' | 'denied'

export interface HttpTask {
  taskArn: string
  cluster: string
  region: string
  startedBy: string | null
  clientToken: string | null
  status: 'PROVISIONING' | 'RUNNING' | 'STOPPED'
  stoppedReason: string | null
  createdAt: number
  environment: Record<string, string>
  instance: { containerInstanceArn: string, ec2InstanceId: string, publicIp: string }
  hostPorts: { tcp32262: number, udp32263: number, tcp32273: number }
}

const account = '000000000000'
const ecsPrefix = 'AmazonEC2ContainerServiceV20141113.'

const ecsFaults: Record<FaultKind, { status: number, type: string, message: string }> = {
  internal: { status: 500, type: 'InternalFailure', message: 'The request processing has failed because of an unknown error, exception or failure.' },
  throttle: { status: 400, type: 'ThrottlingException', message: 'Rate exceeded' },
  denied: { status: 400, type: 'AccessDeniedException', message: 'User: arn:aws:iam::000000000000:user/fractal is not authorized to perform: ecs:RunTask' }
}
const ec2Faults: Record<FaultKind, { status: number, code: string, message: string }> = {
  internal: { status: 500, code: 'InternalError', message: 'An internal error has occurred' },
  throttle: { status: 503, code: 'RequestLimitExceeded', message: 'Request limit exceeded.' },
  denied: { status: 403, code: 'UnauthorizedOperation', message: 'You are not authorized to perform this operation.' }
}

const xmlEscape = (s: string) => s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`)

export async function startEcsStandIn (options: { pendingMs?: number } = {}) {
  const tasks: HttpTask[] = []
  const clusters = new Map<string, HttpTask['instance'][]>()
  const counts = new Map<HttpCommand, number>()
  const inputs = new Map<HttpCommand, unknown[]>()
  const faults = new Map<HttpCommand, FaultKind[]>()
  const always = new Map<HttpCommand, FaultKind>()
  const holds = new Map<HttpCommand, number[]>()
  let pendingMs = options.pendingMs ?? 0
  let next = 0
  // Answers held back, released at close so no timer outlives the test.
  const held = new Set<() => void>()

  const clusterName = (ref: unknown) => String(ref ?? 'default').replace(/^arn:aws:ecs:[^:]*:\d+:cluster\//, '')
  const regionOf = (req: IncomingMessage) => /Credential=[^/]+\/\d+\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? 'us-east-1'
  const advance = (task: HttpTask) => {
    if (task.status === 'PROVISIONING' && Date.now() - task.createdAt >= pendingMs) task.status = 'RUNNING'
    return task
  }
  const shown = (task: HttpTask) => {
    advance(task)
    const running = task.status === 'RUNNING'
    return {
      taskArn: task.taskArn,
      clusterArn: `arn:aws:ecs:${task.region}:${account}:cluster/${task.cluster}`,
      lastStatus: task.status,
      desiredStatus: task.status === 'STOPPED' ? 'STOPPED' : 'RUNNING',
      startedBy: task.startedBy ?? undefined,
      createdAt: task.createdAt / 1000,
      ...(task.status === 'PROVISIONING' ? {} : { containerInstanceArn: task.instance.containerInstanceArn }),
      ...(task.status === 'STOPPED' ? { stoppedReason: task.stoppedReason } : {}),
      containers: [{
        name: 'fractal-container',
        lastStatus: task.status,
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

  type Input = Record<string, any>
  const ecs: Partial<Record<HttpCommand, (input: Input, region: string) => unknown>> = {
    RunTask (input, region) {
      const cluster = clusterName(input.cluster)
      const instances = clusters.get(cluster)
      if (!instances) return { error: { status: 400, type: 'ClusterNotFoundException', message: 'Cluster not found.' } }
      const again = input.clientToken ? tasks.find((t) => t.clientToken === input.clientToken && t.cluster === cluster) : undefined
      if (again) return { tasks: [shown(again)], failures: [] }
      const n = next++
      const env = (input.overrides?.containerOverrides?.[0]?.environment ?? []) as Array<{ name: string, value: string }>
      const task: HttpTask = {
        taskArn: `arn:aws:ecs:${region}:${account}:task/${cluster}/${randomUUID().replace(/-/g, '')}`,
        cluster,
        region,
        startedBy: input.startedBy ?? null,
        clientToken: input.clientToken ?? null,
        status: 'PROVISIONING',
        stoppedReason: null,
        createdAt: Date.now(),
        environment: Object.fromEntries(env.map((e) => [e.name, e.value])),
        instance: instances[n % instances.length]!,
        hostPorts: { tcp32262: 32768 + n * 3, udp32263: 32769 + n * 3, tcp32273: 32770 + n * 3 }
      }
      tasks.push(task)
      return { tasks: [shown(task)], failures: [] }
    },
    DescribeTasks (input) {
      const cluster = clusterName(input.cluster)
      const found = []
      const failures = []
      for (const arn of input.tasks ?? []) {
        const task = tasks.find((t) => t.taskArn === arn && t.cluster === cluster)
        if (task) found.push(shown(task))
        else failures.push({ arn, reason: 'MISSING' })
      }
      return { tasks: found, failures }
    },
    ListTasks (input) {
      const cluster = clusterName(input.cluster)
      const wanted = input.desiredStatus ?? 'RUNNING'
      return {
        taskArns: tasks.filter((t) => t.cluster === cluster && (wanted === 'STOPPED') === (advance(t).status === 'STOPPED'))
          .filter((t) => input.startedBy === undefined || t.startedBy === input.startedBy).map((t) => t.taskArn)
      }
    },
    StopTask (input) {
      const task = tasks.find((t) => t.taskArn === input.task)
      if (!task) return { error: { status: 400, type: 'InvalidParameterException', message: 'The referenced task was not found.' } }
      if (task.status !== 'STOPPED') {
        task.status = 'STOPPED'
        task.stoppedReason = input.reason ?? 'Task stopped by user'
      }
      return { task: shown(task) }
    },
    DescribeContainerInstances (input) {
      const all = [...clusters.values()].flat()
      return {
        containerInstances: (input.containerInstances ?? []).map((arn: string) => all.find((i) => i.containerInstanceArn === arn)).filter(Boolean)
          .map((i: HttpTask['instance']) => ({ containerInstanceArn: i.containerInstanceArn, ec2InstanceId: i.ec2InstanceId, status: 'ACTIVE', agentConnected: true })),
        failures: []
      }
    }
  }

  const describeInstances = (ids: string[]) => {
    const all = [...clusters.values()].flat()
    const items = ids.map((id) => all.find((i) => i.ec2InstanceId === id)).filter((i) => i !== undefined)
      .map((i) => `<item><instanceId>${i.ec2InstanceId}</instanceId><privateIpAddress>10.0.0.${(Number.parseInt(i.ec2InstanceId.slice(-2), 16) % 250) + 1}</privateIpAddress><ipAddress>${i.publicIp}</ipAddress><instanceState><code>16</code><name>running</name></instanceState></item>`)
    const reservations = items.length === 0 ? '' : `<item><reservationId>r-0123456789abcdef0</reservationId><ownerId>${account}</ownerId><instancesSet>${items.join('')}</instancesSet></item>`
    return `<?xml version="1.0" encoding="UTF-8"?>\n<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>${randomUUID()}</requestId><reservationSet>${reservations}</reservationSet></DescribeInstancesResponse>`
  }

  /** Counts and records the call; the fault to answer with, if one is queued or set. */
  const enter = (name: HttpCommand, input: unknown): FaultKind | undefined => {
    counts.set(name, (counts.get(name) ?? 0) + 1)
    inputs.set(name, [...(inputs.get(name) ?? []), input])
    return faults.get(name)?.shift() ?? always.get(name)
  }
  const holdFor = (name: HttpCommand) => holds.get(name)?.shift() ?? 0

  async function handle (req: IncomingMessage, res: ServerResponse) {
    let body = ''
    for await (const chunk of req) body += chunk
    const target = req.headers['x-amz-target']
    if (typeof target === 'string' && target.startsWith(ecsPrefix)) {
      const name = target.slice(ecsPrefix.length) as HttpCommand
      const input = JSON.parse(body || '{}') as Input
      const fault = enter(name, input)
      // The effect happens now; the answer may be held back (a worker killed while it waits for it).
      const out = fault ? { error: ecsFaults[fault] } : (ecs[name]?.(input, regionOf(req)) ?? { error: { status: 400, type: 'UnknownOperationException', message: name } })
      const hold = holdFor(name)
      if (hold > 0) {
        await new Promise<void>((resolve) => {
          const release = () => { clearTimeout(timer); held.delete(release); resolve() }
          const timer = setTimeout(release, hold)
          held.add(release)
        })
      }
      if (res.destroyed) return
      const { error } = out as { error?: { status: number, type: string, message: string } }
      res.writeHead(error ? error.status : 200, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() })
      res.end(JSON.stringify(error ? { __type: error.type, message: error.message } : out))
      return
    }
    const form = new URLSearchParams(body)
    if (form.get('Action') === 'DescribeInstances') {
      const ids = [...form.entries()].filter(([k]) => k.startsWith('InstanceId.')).map(([, v]) => v)
      const fault = enter('DescribeInstances', { InstanceIds: ids })
      if (fault) {
        const f = ec2Faults[fault]
        res.writeHead(f.status, { 'content-type': 'text/xml' })
        res.end(`<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${f.code}</Code><Message>${xmlEscape(f.message)}</Message></Error></Errors><RequestID>${randomUUID()}</RequestID></Response>`)
        return
      }
      res.writeHead(200, { 'content-type': 'text/xml' })
      res.end(describeInstances(ids))
      return
    }
    res.writeHead(400, { 'content-type': 'application/x-amz-json-1.1' })
    res.end(JSON.stringify({ __type: 'UnknownOperationException', message: `unknown request ${target ?? form.get('Action') ?? ''}` }))
  }

  const server = createServer((req, res) => {
    handle(req, res).catch((err: Error) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/x-amz-json-1.1' })
      res.end(JSON.stringify({ __type: 'InternalFailure', message: err.message }))
    })
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`

  return {
    url,
    /** The environment a process needs to reach this stand-in with the real SDK (and nothing else). */
    env: {
      AWS_ENDPOINT_URL_ECS: url,
      AWS_ENDPOINT_URL_EC2: url,
      AWS_ACCESS_KEY_ID: 'AKIDFRACTALTEST',
      AWS_SECRET_ACCESS_KEY: 'fractal-test-secret',
      AWS_EC2_METADATA_DISABLED: 'true'
    } as Record<string, string>,
    /** A cluster the app may use (the `cluster` table names it), with `instances` EC2 hosts (default 1). */
    addCluster (name: string, instances = 1) {
      const list = Array.from({ length: instances }, (_, i) => {
        const n = clusters.size * 16 + i
        return {
          containerInstanceArn: `arn:aws:ecs:model:${account}:container-instance/${name}/${(n + 1).toString(16).padStart(32, '0')}`,
          ec2InstanceId: `i-${(0xa00000 + n).toString(16).padStart(17, '0')}`,
          publicIp: `198.51.100.${(n % 250) + 1}`
        }
      })
      clusters.set(name, list)
    },
    tasks,
    tasksOf (containerId: string) { return tasks.filter((t) => t.startedBy === containerId) },
    calls (name: HttpCommand) { return counts.get(name) ?? 0 },
    /** How many DescribeTasks asked about the tasks of this container. */
    polls (containerId: string) {
      const arns = new Set(tasks.filter((t) => t.startedBy === containerId).map((t) => t.taskArn))
      return (inputs.get('DescribeTasks') as Input[] | undefined ?? []).filter((i) => (i.tasks as string[] | undefined)?.some((arn) => arns.has(arn))).length
    },
    received<T = Input> (name: HttpCommand): T[] { return (inputs.get(name) ?? []) as T[] },
    /** The next `times` calls of the command fail with this fault. */
    fail (name: HttpCommand, kind: FaultKind, times: number) {
      faults.set(name, [...(faults.get(name) ?? []), ...Array.from({ length: times }, () => kind)])
    },
    /** Every call of the command fails with this fault until heal(). */
    failAlways (name: HttpCommand, kind: FaultKind) { always.set(name, kind) },
    heal (name?: HttpCommand) {
      if (name) { always.delete(name); faults.delete(name) } else { always.clear(); faults.clear() }
    },
    /** The next call of the command takes effect at once, but its answer comes `ms` later. */
    hold (name: HttpCommand, ms: number) { holds.set(name, [...(holds.get(name) ?? []), ms]) },
    /** How long a new task stays PROVISIONING (tasks already started keep counting from their start). */
    set pendingMs (ms: number) { pendingMs = ms },
    get pendingMs () { return pendingMs },
    async close () {
      for (const release of [...held]) release()
      server.closeAllConnections()
      server.close()
    }
  }
}

export type EcsStandIn = Awaited<ReturnType<typeof startEcsStandIn>>
