import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Cluster, ClusterSteps, DB } from '../../db/types.js'
import { isTransient } from '../containers/provider.js'
import type { JobDefinition, JobQueue } from '../queue.js'
import { createClusterJob, deleteClusterJob, recordSteps, refreshUsage, type ClusterJobPayload } from './clusters.service.js'
import { hostUserData, type ClusterSpec, type FleetProvider, type HostAgentSettings } from './fleet.provider.js'

export interface ClusterJobDeps {
  db: Kysely<DB>
  provider: FleetProvider
  queue: JobQueue
  /** What hosts' agents are told in their user data (where to call us, how to shake hands). */
  hostAgent: HostAgentSettings
  /** Between two looks at a draining group's instances. */
  pollMs: number
  log: { warn (obj: object, msg: string): void }
}

const setJob = (db: Kysely<DB>, id: string, changes: { state?: 'running' | 'succeeded' | 'failed', progress?: number, message?: string, error_code?: string | null, result?: string }) =>
  db.updateTable('job').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).where('state', '!=', 'cancelled').execute()

const specOf = (cluster: Cluster, hostAgent: HostAgentSettings): ClusterSpec => ({
  name: cluster.name,
  region: cluster.region_code,
  instanceType: cluster.instance_type ?? 'g4dn.xlarge',
  ami: cluster.ami ?? '',
  minSize: cluster.min_size,
  maxSize: cluster.max_size,
  userData: hostUserData({ name: cluster.name, region: cluster.region_code }, hostAgent)
})

/** Deletes, newest first, what the steps say was made; records each deletion (a retry skips it). */
async function teardown (deps: ClusterJobDeps, cluster: Cluster, jobId: string, progressFrom: number): Promise<'done' | 'waiting'> {
  const { db, provider } = deps
  const steps: ClusterSteps = cluster.steps
  const deleted = new Set(steps.deleted ?? [])
  const done = async (step: string, progress: number, message: string) => {
    deleted.add(step)
    await recordSteps(db, cluster.id, { deleted: [...deleted] })
    await setJob(db, jobId, { progress, message })
  }
  const region = cluster.region_code
  if (steps.autoScalingGroupArn && !deleted.has('scaledToZero')) {
    try {
      await provider.drainGroup(region, cluster.name)
    } catch (err) {
      // A group deleted by hand has nothing to drain.
      if (!/not ?found|does not exist/i.test(`${(err as Error).name} ${(err as Error).message}`)) throw err
    }
    await done('scaledToZero', progressFrom + 10, 'draining the hosts')
  }
  if (steps.autoScalingGroupArn && !deleted.has('autoScalingGroup') && await provider.groupInstances(region, cluster.name) > 0) return 'waiting'
  if (steps.ecsCluster && !deleted.has('ecsCluster')) {
    await provider.deleteCluster(region, cluster.name)
    await done('ecsCluster', progressFrom + 25, 'ECS cluster deleted')
  }
  if (steps.capacityProvider && !deleted.has('capacityProvider')) {
    await provider.deleteCapacityProvider(region, steps.capacityProvider)
    await done('capacityProvider', progressFrom + 40, 'capacity provider deleted')
  }
  if (steps.autoScalingGroupArn && !deleted.has('autoScalingGroup')) {
    await provider.deleteAutoScalingGroup(region, cluster.name)
    await done('autoScalingGroup', progressFrom + 55, 'Auto Scaling group deleted')
  }
  if (steps.launchTemplateId && !deleted.has('launchTemplate')) {
    await provider.deleteLaunchTemplate(region, steps.launchTemplateId)
    await done('launchTemplate', progressFrom + 65, 'launch template deleted')
  }
  return 'done'
}

async function loadCluster (db: Kysely<DB>, id: string) {
  return db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirst()
}

/**
 * Creates a cluster step by step, each recorded as it completes: launch template → Auto Scaling group →
 * capacity provider (managed scaling) → ECS cluster. A retried or resumed job skips what is recorded. A
 * transient AWS error is retried by the queue (backoff); anything else, or the last attempt, tears down
 * what was made and fails the cluster and the job.
 */
async function createClusterStep (deps: ClusterJobDeps, data: ClusterJobPayload, lastAttempt: boolean) {
  const { db, provider } = deps
  let cluster = await loadCluster(db, data.clusterId)
  if (!cluster || cluster.status !== 'creating') return { skipped: true }
  const spec = specOf(cluster, deps.hostAgent)
  let steps: ClusterSteps = cluster.steps
  const record = async (made: Partial<ClusterSteps>, progress: number, message: string) => {
    steps = { ...steps, ...made }
    await recordSteps(db, cluster!.id, made)
    await setJob(db, data.jobId, { state: 'running', progress, message })
  }
  try {
    await setJob(db, data.jobId, { state: 'running', message: 'creating the launch template' })
    if (!steps.launchTemplateId) await record(await provider.createLaunchTemplate(spec), 25, 'launch template ready')
    // A launch template recorded before versions were (version 1 is the one it was made with).
    if (!steps.autoScalingGroupArn) await record(await provider.createAutoScalingGroup(spec, steps.launchTemplateId!, steps.launchTemplateVersion ?? '1'), 50, 'Auto Scaling group ready')
    if (!steps.capacityProvider) await record(await provider.createCapacityProvider(spec, steps.autoScalingGroupArn!), 75, 'capacity provider ready')
    if (!steps.ecsCluster) {
      await provider.createCluster(spec, steps.capacityProvider!)
      await record({ ecsCluster: true }, 90, 'ECS cluster ready')
    }
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('cluster').set({ status: 'active', capacity_provider: steps.capacityProvider!, updated_at: sql`now()` }).where('id', '=', data.clusterId).execute()
      await trx.updateTable('job').set({ state: 'succeeded', progress: 100, message: 'active', result: JSON.stringify({ clusterId: data.clusterId }), updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
    })
    await refreshUsage(db, provider, cluster).catch(() => null)
    return { active: true }
  } catch (err) {
    if (isTransient(err) && !lastAttempt) {
      await setJob(db, data.jobId, { message: `the cloud provider is busy (${(err as Error).name}); retrying` })
      throw err
    }
    deps.log.warn({ err, clusterId: data.clusterId }, 'cluster creation failed: tearing down what it made')
    cluster = (await loadCluster(db, data.clusterId))!
    let outcome: 'done' | 'waiting' | 'error' = 'error'
    try {
      outcome = await teardown(deps, cluster, data.jobId, 0)
    } catch (teardownErr) {
      deps.log.warn({ err: teardownErr, clusterId: data.clusterId }, 'tearing down a failed cluster failed: delete it to retry')
    }
    const cleanup = await db.transaction().execute(async (trx) => {
      await trx.updateTable('cluster').set({ status: 'failed', updated_at: sql`now()` }).where('id', '=', data.clusterId).execute()
      await trx.updateTable('job').set({ state: 'failed', progress: 100, error_code: 'cluster_create_failed', message: (err as Error).message.slice(0, 500), updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
      // Its hosts are still going: a teardown job waits for them and deletes the rest.
      if (outcome !== 'waiting') return null
      return trx.insertInto('job').values({ kind: 'delete_cluster', owner_id: null, message: 'tearing down a failed creation', deadline_at: new Date(Date.now() + 3_600_000) })
        .returning('id').executeTakeFirstOrThrow()
    })
    if (cleanup) await deps.queue.enqueue<ClusterJobPayload>(deleteClusterJob, { clusterId: data.clusterId, jobId: cleanup.id }, { jobId: cleanup.id, delayMs: deps.pollMs, retries: 5 })
    return { failed: true }
  }
}

/** Drains and deletes a cluster in order; waits for the hosts to go by re-enqueueing itself with a delay. */
async function deleteClusterStep (deps: ClusterJobDeps, data: ClusterJobPayload, lastAttempt: boolean) {
  const { db } = deps
  const cluster = await loadCluster(db, data.clusterId)
  if (!cluster || cluster.status === 'deleted') {
    await setJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'deleted' })
    return { deleted: true }
  }
  const job = await db.selectFrom('job').select(['deadline_at', 'state']).where('id', '=', data.jobId).executeTakeFirst()
  if (!job || job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return { skipped: true }
  try {
    await setJob(db, data.jobId, { state: 'running' })
    const outcome = await teardown(deps, cluster, data.jobId, 0)
    if (outcome === 'waiting') {
      if (job.deadline_at && job.deadline_at.getTime() < Date.now()) {
        await setJob(db, data.jobId, { state: 'failed', progress: 100, error_code: 'cluster_delete_timeout', message: 'the hosts did not drain before the deadline; delete again to resume' })
        return { failed: true }
      }
      const step = (data.step ?? 0) + 1
      await setJob(db, data.jobId, { message: 'waiting for the hosts to terminate' })
      await deps.queue.enqueue<ClusterJobPayload>(deleteClusterJob, { ...data, step }, { jobId: `${data.jobId}:${step}`, delayMs: deps.pollMs, retries: 5 })
      return { waiting: true }
    }
    await db.transaction().execute(async (trx) => {
      // A failed creation stays `failed` once cleaned up; anything else is now `deleted`.
      await trx.updateTable('cluster').set({ status: cluster.status === 'failed' ? 'failed' : 'deleted', updated_at: sql`now()` }).where('id', '=', data.clusterId).execute()
      await trx.updateTable('job').set({ state: 'succeeded', progress: 100, message: 'deleted', updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
    })
    return { deleted: true }
  } catch (err) {
    if (isTransient(err) && !lastAttempt) {
      await setJob(db, data.jobId, { message: `the cloud provider is busy (${(err as Error).name}); retrying` })
      throw err
    }
    await setJob(db, data.jobId, { state: 'failed', progress: 100, error_code: 'cluster_delete_failed', message: `${(err as Error).message.slice(0, 400)}; delete again to resume` })
    return { failed: true }
  }
}

export function createClusterJobs (deps: ClusterJobDeps): JobDefinition[] {
  return [
    { ...createClusterJob, handle: (data: ClusterJobPayload, ctx) => createClusterStep(deps, data, ctx.lastAttempt) },
    { ...deleteClusterJob, handle: (data: ClusterJobPayload, ctx) => deleteClusterStep(deps, data, ctx.lastAttempt) }
  ]
}
