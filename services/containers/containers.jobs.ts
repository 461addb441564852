import type { Kysely } from 'kysely'
import type { Container, DB } from '../../db/types.js'
import { hashToId } from '../hashing.js'
import type { JobDefinition, JobQueue } from '../queue.js'
import * as repo from './containers.repository.js'
import { startContainerJob, startJobOf, warmStartContainerJob, type StartContainerPayload } from './containers.assignment.js'
import { completeStartIfPinged, failStart, stopContainerJob, type StopContainerPayload } from './containers.lifecycle.js'
import { backoffMs, isTransient, type CloudProvider } from './provider.js'

export interface StartTiming {
  /** Between two DescribeTasks (and two looks for the first ping). */
  pollMs: number
  /** How long one attempt polls before it hands the worker back and re-enqueues itself with a delay. */
  pollBudgetMs: number
  /** From RUNNING to the first ping. */
  firstPingTimeoutMs: number
}

export interface ContainerJobDeps {
  db: Kysely<DB>
  provider: CloudProvider
  queue: JobQueue
  /** Where the container calls us back (pings, protocol info). */
  callbackUrl: string
  timing: StartTiming
  /** See ContainerDeps.onReady. */
  onReady?: (container: Container) => Promise<void>
  log: { warn (obj: object, msg: string): void, info (obj: object, msg: string): void }
}

type StartOutcome = { containerId: string } | { cancelled: true } | { failed: string } | { waiting: string }

const formatDuration = (ms: number) => (ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`)
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))
const terminalJob = new Set(['succeeded', 'failed', 'cancelled'])

/** Hands the worker back: the same start job continues in `delayMs` as a new queue job. */
async function continueLater (deps: ContainerJobDeps, data: StartContainerPayload, delayMs: number, message: string, transient = false): Promise<StartOutcome> {
  const step = (data.step ?? 0) + 1
  await repo.updateJob(deps.db, data.jobId, { message })
  await deps.queue.enqueue<StartContainerPayload>(startJobOf(data), {
    ...data, step, transientFailures: transient ? (data.transientFailures ?? 0) + 1 : 0
  }, { jobId: `${data.jobId}:${step}`, delayMs, retries: 3 })
  return { waiting: message }
}

async function clusterName (db: Kysely<DB>, container: Pick<Container, 'cluster_id' | 'region_code'>) {
  const cluster = container.cluster_id ? await repo.findClusterById(db, container.cluster_id) : undefined
  return cluster?.name ?? `fractal-${container.region_code}-1`
}

/**
 * Places the task on the fullest cluster of the region that still has room (bin-packing), or on the cluster a
 * developer pinned it to (`cluster_id` before any task: POST /v1/containers with `cluster`), room or not.
 */
async function placeTask (deps: ContainerJobDeps, container: Container, data: StartContainerPayload): Promise<Container | StartOutcome> {
  const { db } = deps
  const cluster = container.cluster_id ? await repo.findClusterById(db, container.cluster_id) : await repo.chooseCluster(db, container.region_code)
  if (!cluster) return failStart(deps, container, data.jobId, 'no_capacity', `no cluster in ${container.region_code} has room for another container`)
  const offer = await repo.findTaskDefinition(db, container.app_id, container.region_code)
  const { taskArn } = await deps.provider.runTask({
    containerId: container.id,
    region: container.region_code,
    cluster: cluster.name,
    capacityProvider: cluster.capacity_provider,
    taskDefinition: offer.task_definition,
    environment: {
      FRACTAL_CONTAINER_ID: container.id,
      FRACTAL_AES_KEY: container.aes_key,
      FRACTAL_CONTAINER_SECRET: data.secret,
      FRACTAL_CALLBACK_URL: deps.callbackUrl,
      FRACTAL_DPI: String(container.dpi)
    }
  })
  const placed = await repo.recordTask(db, container.id, { task_arn: taskArn, cluster_id: cluster.id })
  if (!placed) {
    // Stopped while we placed it (a cancel, a shutdown): the task just started must not run on.
    await deps.provider.stopTask(container.region_code, cluster.name, taskArn, 'stopped before it started')
    return { cancelled: true }
  }
  await repo.updateJob(db, data.jobId, { state: 'running', progress: 30, message: 'waiting for the task to run' })
  return placed
}

/**
 * Starts the task for a container, in steps that never hold a worker for long: place the task (once: a
 * retry finds the task it started), poll ECS until RUNNING for at most `pollBudgetMs`, record the host's
 * address and ports, then wait for the container's first ping (which completes the start, here or in the
 * ping handler). Between steps it re-enqueues itself with a delay. Every way out leaves a terminal state.
 */
async function startContainer (deps: ContainerJobDeps, data: StartContainerPayload, lastAttempt: boolean): Promise<StartOutcome> {
  const { db, provider, timing } = deps
  const job = await repo.findJob(db, data.jobId)
  if (!job || terminalJob.has(job.state)) return { cancelled: true }
  let container = await repo.findContainer(db, data.containerId)
  if (!container || container.state === 'stopped' || container.state === 'failed' || container.state === 'stopping') {
    await repo.updateJob(db, data.jobId, { state: 'cancelled', message: 'the container was stopped before it started', progress: 100 })
    return { cancelled: true }
  }
  if (container.state === 'available' || container.state === 'in_use') {
    await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'running', result: JSON.stringify({ containerId: container.id }) })
    return { containerId: container.id }
  }
  if (job.deadline_at && job.deadline_at.getTime() < Date.now()) {
    return failStart(deps, container, data.jobId, 'start_timeout', 'the container did not start before the job deadline')
  }
  try {
    if (container.state === 'creating') {
      container = (await repo.beginStart(db, container.id, data.jobId)) ?? container
      await repo.updateJob(db, data.jobId, { state: 'running', progress: 10, message: 'placing the task' })
    }
    if (!container.task_arn) {
      // A payload whose secret is not the container's any more was superseded (the reaper resumed this
      // start with a new secret): the task must get the secret the container row knows.
      if (hashToId(data.secret) !== container.secret_hash) return { waiting: 'superseded by a resumed start' }
      const placed = await placeTask(deps, container, data)
      if (!('id' in placed)) return placed
      container = placed
    }
    const cluster = await clusterName(db, container)
    const until = Date.now() + timing.pollBudgetMs
    while (!container.host_ip) {
      const status = await provider.describeTask(container.region_code, cluster, container.task_arn!)
      if (status.state === 'stopped') return failStart(deps, container, data.jobId, 'task_stopped', `the task stopped while starting: ${status.reason || 'no reason given'}`)
      if (status.state === 'running') {
        const running = await repo.recordRunning(db, container.id, {
          host_ip: status.hostIp, host_instance_id: status.hostInstanceId ?? null, port_32262: status.ports.tcp32262, port_32263: status.ports.udp32263, port_32273: status.ports.tcp32273
        })
        if (!running) return { cancelled: true }
        container = running
        await repo.updateJob(db, data.jobId, { progress: 70, message: 'waiting for the container to report' })
        break
      }
      if (Date.now() + timing.pollMs > until) return continueLater(deps, data, timing.pollMs, 'waiting for the task to run')
      await sleep(timing.pollMs)
    }
    // RUNNING: the first ping completes the start. It may have come already, or come while we wait here.
    for (;;) {
      const ready = await completeStartIfPinged(db, container.id)
      if (ready) {
        await deps.onReady?.(ready)
        return { containerId: container.id }
      }
      const now = await repo.findContainer(db, container.id)
      if (!now || now.state !== 'starting') return now && (now.state === 'available' || now.state === 'in_use') ? { containerId: now.id } : { cancelled: true }
      // A task that exits before it reports (a crash-looping image) fails now, with ECS's reason.
      const status = await provider.describeTask(now.region_code, cluster, now.task_arn!)
      if (status.state === 'stopped') return failStart(deps, now, data.jobId, 'task_stopped', `the task stopped before the container reported: ${status.reason || 'no reason given'}`)
      if (now.running_at && now.running_at.getTime() + timing.firstPingTimeoutMs < Date.now()) {
        return failStart(deps, now, data.jobId, 'no_first_ping', `the container did not report within ${formatDuration(timing.firstPingTimeoutMs)} of running`)
      }
      if (Date.now() + timing.pollMs > until) return continueLater(deps, data, timing.pollMs, 'waiting for the container to report')
      await sleep(timing.pollMs)
    }
  } catch (err) {
    const e = err as Error & { $fault?: string }
    if (isTransient(err)) {
      // Throttling, a 5xx: try again later with backoff and jitter, up to the job's deadline.
      const delay = backoffMs(data.transientFailures ?? 0, timing.pollMs)
      deps.log.info({ err: { name: e.name, message: e.message }, containerId: container.id, delay }, 'cloud provider busy, retrying the start later')
      return continueLater(deps, data, delay, `the cloud provider is busy (${e.name}); trying again in ${Math.ceil(delay / 1000)} s`, true)
    }
    // An answer that will not change by asking again (a bad task definition, no instance) fails at once.
    if (e.$fault === 'client' || e.name === 'TaskFailure' || lastAttempt) {
      deps.log.warn({ err, containerId: container.id }, 'container failed to start')
      return failStart(deps, container, data.jobId, 'start_failed', e.message)
    }
    await repo.updateJob(db, data.jobId, { message: `retrying: ${e.message}` })
    throw err
  }
}

async function stopContainer (deps: ContainerJobDeps, data: StopContainerPayload) {
  const { db } = deps
  const container = await repo.findContainer(db, data.containerId)
  if (!container) {
    await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'gone' })
    return
  }
  if (container.state !== 'stopped') {
    await repo.updateJob(db, data.jobId, { state: 'running', progress: 30, message: 'stopping the task' })
    if (container.state !== 'stopping') {
      await repo.updateContainer(db, container.id, { state: 'stopping' })
      await repo.insertContainerEvent(db, { container_id: container.id, from_state: container.state, to_state: 'stopping', job_id: data.jobId })
    }
    if (container.task_arn) await deps.provider.stopTask(container.region_code, await clusterName(db, container), container.task_arn, 'stopped by Fractal')
    // The container and its job end together: nobody reads a stopped container with a running job.
    await db.transaction().execute(async (trx) => {
      await repo.updateContainer(trx, container.id, { state: 'stopped', client_connected: false })
      // Container time for billing: from its assignment to now.
      if (container.user_id) await repo.recordUsage(trx, container)
      await repo.closeSessions(trx, container.id)
      await repo.insertContainerEvent(trx, { container_id: container.id, from_state: 'stopping', to_state: 'stopped', job_id: data.jobId })
      await repo.updateJob(trx, data.jobId, { state: 'succeeded', progress: 100, message: 'stopped' })
    })
    return
  }
  await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'stopped' })
}

export function createContainerJobs (deps: ContainerJobDeps): JobDefinition[] {
  return [
    { ...startContainerJob, handle: (data: StartContainerPayload, ctx) => startContainer(deps, data, ctx.lastAttempt) },
    { ...warmStartContainerJob, handle: (data: StartContainerPayload, ctx) => startContainer(deps, data, ctx.lastAttempt) },
    { ...stopContainerJob, handle: (data: StopContainerPayload) => stopContainer(deps, data) }
  ]
}
