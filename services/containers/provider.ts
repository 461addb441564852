// Where containers run. `aws` drives ECS (services/containers/aws-provider.ts); `simulated`, the embedded
// default, makes each task run after a short delay with a fake address and pings for the container, so
// everything works without AWS. The start job only speaks this interface.
export interface TaskSpec {
  containerId: string
  region: string
  cluster: string
  /** The cluster's capacity provider (managed scaling); null lets the cluster's default strategy decide. */
  capacityProvider: string | null
  taskDefinition: string
  /** Handed to the container in its environment; never shown to users. */
  environment: Record<string, string>
}

export interface HostPorts { tcp32262: number, udp32263: number, tcp32273: number }

/**
 * What a task is doing: still being placed or pulled, running (with its address, and on AWS the EC2 instance it
 * runs on), or stopped (with why).
 */
export type TaskStatus =
  | { state: 'pending' }
  | { state: 'running', hostIp: string, ports: HostPorts, hostInstanceId?: string }
  | { state: 'stopped', reason: string }

export interface ProviderTask { taskArn: string, startedBy: string | null, createdAt: Date | null }

export interface CloudProvider {
  readonly kind: 'simulated' | 'aws'
  /** Starts the task, or finds the one already started for this container (a retry never starts two). */
  runTask (spec: TaskSpec): Promise<{ taskArn: string }>
  describeTask (region: string, cluster: string, taskArn: string): Promise<TaskStatus>
  stopTask (region: string, cluster: string, taskArn: string, reason: string): Promise<void>
  /** Every task of a cluster that is not stopped: the reaper compares them with our rows. */
  listTasks (region: string, cluster: string): Promise<ProviderTask[]>
  /**
   * The task definition `family:revision` (pinned) or `family` (its latest active revision) names in a region,
   * or null when the cloud has no such one (or it is inactive): the catalog refuses to run an app on it.
   */
  describeTaskDefinition (region: string, taskDefinition: string): Promise<{ family: string, revision: number } | null>
}

/** `family` or `family:revision` as ECS names a task definition (families: letters, digits, `-` and `_`, up to 255). */
export function parseTaskDefinition (ref: string): { family: string, revision: number | null } | null {
  const match = /^([A-Za-z0-9_-]{1,255})(?::([1-9][0-9]{0,9}))?$/.exec(ref)
  if (!match) return null
  return { family: match[1]!, revision: match[2] === undefined ? null : Number(match[2]) }
}

/** A cloud error worth trying again later: throttling, a 5xx, a timeout. */
export function isTransient (err: unknown): boolean {
  const e = err as { name?: string, $retryable?: unknown, $metadata?: { httpStatusCode?: number }, code?: string }
  if (!e || typeof e !== 'object') return false
  if (e.$retryable) return true
  if (/throttl|toomanyrequests|requestlimitexceeded|serverexception|serviceunavailable|internalerror|timeout/i.test(e.name ?? '')) return true
  if ((e.$metadata?.httpStatusCode ?? 0) >= 500) return true
  return ['ECONNRESET', 'ETIMEDOUT', 'ECONNREFUSED', 'EAI_AGAIN'].includes(e.code ?? '')
}

/** Exponential backoff with full jitter, capped: the n-th retry waits a random time in [base·2ⁿ/2, base·2ⁿ]. */
export function backoffMs (attempt: number, baseMs = 1000, capMs = 30_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** attempt)
  return Math.round(ceiling / 2 + Math.random() * ceiling / 2)
}

interface SimulatedTask { taskArn: string, cluster: string, containerId: string, startedAt: number, stopped: string | null, n: number, pinger?: NodeJS.Timeout }

/**
 * The embedded stand-in for ECS: a task runs `startDelayMs` after RunTask; then the "container" pings us
 * through `onRunning` (the containers feature authenticates it with the secret from its environment, as a real one would).
 */
export function createSimulatedProvider (options: {
  startDelayMs: number
  pingEveryMs?: number
  onRunning?: (containerId: string, secret: string) => Promise<void>
  /** The task definitions the simulated cloud has (`family:revision`), in every region. */
  taskDefinitions?: readonly string[]
}): CloudProvider {
  const tasks = new Map<string, SimulatedTask>()
  const revisions = new Map<string, Set<number>>()
  for (const known of options.taskDefinitions ?? []) {
    const parsed = parseTaskDefinition(known)
    if (!parsed || parsed.revision === null) throw new Error(`simulated provider: ${known} is not family:revision`)
    revisions.set(parsed.family, (revisions.get(parsed.family) ?? new Set()).add(parsed.revision))
  }
  const byContainer = new Map<string, string>()
  let next = 0
  const portsOf = (n: number): HostPorts => ({ tcp32262: 40000 + (n % 1000) * 3, udp32263: 40001 + (n % 1000) * 3, tcp32273: 40002 + (n % 1000) * 3 })
  return {
    kind: 'simulated',
    async runTask (spec) {
      const existing = byContainer.get(spec.containerId)
      if (existing) return { taskArn: existing }
      const n = next++
      const taskArn = `arn:aws:ecs:${spec.region}:000000000000:task/${spec.cluster}/${spec.containerId.replace(/-/g, '')}`
      tasks.set(taskArn, { taskArn, cluster: spec.cluster, containerId: spec.containerId, startedAt: Date.now(), stopped: null, n })
      byContainer.set(spec.containerId, taskArn)
      const secret = spec.environment.FRACTAL_CONTAINER_SECRET
      if (options.onRunning && secret) {
        const ping = () => {
          const task = tasks.get(taskArn)
          if (task && !task.stopped) options.onRunning!(spec.containerId, secret).catch(() => {})
        }
        // The first ping when the task runs, then one every `pingEveryMs` while it runs, as a real container.
        setTimeout(() => {
          ping()
          const task = tasks.get(taskArn)
          if (task && !task.stopped) {
            task.pinger = setInterval(ping, options.pingEveryMs ?? 30_000)
            task.pinger.unref()
          }
        }, options.startDelayMs).unref()
      }
      return { taskArn }
    },
    async describeTask (_region, _cluster, taskArn) {
      const task = tasks.get(taskArn)
      if (!task) return { state: 'stopped', reason: 'task not found' }
      if (task.stopped) return { state: 'stopped', reason: task.stopped }
      if (Date.now() - task.startedAt < options.startDelayMs) return { state: 'pending' }
      return { state: 'running', hostIp: `203.0.113.${(task.n % 250) + 1}`, ports: portsOf(task.n) }
    },
    async stopTask (_region, _cluster, taskArn, reason) {
      const task = tasks.get(taskArn)
      if (task && !task.stopped) {
        task.stopped = reason
        clearInterval(task.pinger)
      }
    },
    async listTasks (_region, cluster) {
      return [...tasks.values()].filter((t) => t.cluster === cluster && !t.stopped)
        .map((t) => ({ taskArn: t.taskArn, startedBy: t.containerId, createdAt: new Date(t.startedAt) }))
    },
    async describeTaskDefinition (_region, ref) {
      const parsed = parseTaskDefinition(ref)
      const known = parsed ? revisions.get(parsed.family) : undefined
      if (!parsed || !known) return null
      const revision = parsed.revision ?? Math.max(...known)
      return known.has(revision) ? { family: parsed.family, revision } : null
    }
  }
}
