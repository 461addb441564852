// The lifecycle of a container after its assignment: how a start ends (completed by its first ping, or
// failed), and stops (the user's, the container's own, a cluster's, an account's).
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Container, DB, Job } from '../../db/types.js'
import * as repo from './containers.repository.js'
import type { CloudProvider } from './provider.js'
import { getOwnContainer, type ContainerDeps } from './containers.service.js'

export interface StopContainerPayload { containerId: string, jobId: string }

export const stopContainerJob = { family: 'containers', name: 'stopContainer' } as const

/** What ends a start: the store, and the provider that stops a task left behind. */
export interface StartEnder {
  db: Kysely<DB>
  provider: CloudProvider
}

/**
 * A start that will not finish: the container fails with the reason, its job fails with a stable code,
 * in one transaction; then the task it may have started is stopped. Answers `{ failed: code }`.
 */
export async function failStart (deps: StartEnder, container: Container, jobId: string | null, code: string, reason: string) {
  const message = reason.slice(0, 500)
  const failed = await deps.db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('container').set({ state: 'failed', failure_reason: message, updated_at: sql`now()` })
      .where('id', '=', container.id).where('state', 'in', ['creating', 'starting']).returningAll().executeTakeFirst()
    if (row) await repo.insertContainerEvent(trx, { container_id: container.id, from_state: container.state, to_state: 'failed', job_id: jobId, reason: message })
    if (jobId) await repo.updateJob(trx, jobId, { state: 'failed', progress: 100, error_code: code, message })
    return row
  })
  const task = failed?.task_arn ?? container.task_arn
  if (task) {
    const cluster = failed?.cluster_id ?? container.cluster_id
    const name = cluster ? (await repo.findClusterById(deps.db, cluster))?.name : undefined
    await deps.provider.stopTask(container.region_code, name ?? `fractal-${container.region_code}-1`, task, reason.slice(0, 255)).catch(() => {})
  }
  return { failed: code }
}

/**
 * The start's last step, when the task runs and the container has pinged (whichever comes second calls
 * it): the container becomes ready and its start job succeeds, together. False when not both yet.
 */
export async function completeStartIfPinged (db: Kysely<DB>, containerId: string): Promise<Container | null> {
  return db.transaction().execute(async (trx) => {
    const ready = await repo.finishStart(trx, containerId)
    if (!ready) return null
    await repo.insertContainerEvent(trx, { container_id: ready.id, from_state: 'starting', to_state: ready.state, job_id: ready.start_job_id, reason: 'first ping' })
    if (ready.start_job_id) await repo.updateJob(trx, ready.start_job_id, { state: 'succeeded', progress: 100, message: 'running', result: JSON.stringify({ containerId: ready.id }) })
    return ready
  })
}

/** Queues a stop job for one of the user's containers (idempotent: a stopped one gets an already-done job). */
export async function stopContainer (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, userId: string, id: string): Promise<Job> {
  return queueStop(db, deps, await getOwnContainer(db, userId, id))
}

/** The container asked to be shut down (its own secret): the same stop job, owned by its user. */
export async function shutdownContainer (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, container: Container): Promise<Job> {
  return queueStop(db, deps, container)
}

/** Cluster deletion with force: every live container of the cluster is stopped. */
export async function stopContainersOfCluster (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, clusterId: string) {
  const rows = await db.selectFrom('container').selectAll().where('cluster_id', '=', clusterId)
    .where('state', 'in', ['creating', 'starting', 'available', 'in_use']).execute()
  for (const container of rows) await queueStop(db, deps, container)
}

/** Account deletion step: every live container of the account is stopped. */
export async function stopAllOf (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, userId: string) {
  for (const { id } of await repo.liveContainersOf(db, userId)) {
    const container = await repo.findContainer(db, id)
    if (container) await queueStop(db, deps, container)
  }
}

export async function queueStop (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, container: Container): Promise<Job> {
  const userId = container.user_id
  const id = container.id
  const done = container.state === 'stopped' || container.state === 'failed'
  const job = await db.transaction().execute(async (trx) => {
    const job = await repo.insertJob(trx, { kind: 'stop_container', owner_id: userId, message: done ? 'already stopped' : 'queued' })
    if (done) {
      await repo.updateJob(trx, job.id, { state: 'succeeded', progress: 100 })
      return { ...job, state: 'succeeded' as const, progress: 100 }
    }
    return job
  })
  if (!done) {
    try {
      await deps.queue.enqueue<StopContainerPayload>(stopContainerJob, { containerId: id, jobId: job.id }, { jobId: job.id, retries: 5 })
    } catch (err) {
      // No half-written stop: the job says so and the caller gets 503 (stopping again is idempotent).
      await repo.updateJob(db, job.id, { state: 'failed', progress: 100, error_code: 'queue_unavailable', message: 'the job queue is unavailable; try again' })
      throw err
    }
  }
  return job
}
