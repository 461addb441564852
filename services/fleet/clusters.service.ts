import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Cluster, ClusterStatus, ClusterSteps, DB, Job } from '../../db/types.js'
import { stopContainersOfCluster } from '../containers/containers.lifecycle.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import type { JobQueue } from '../queue.js'
import { BadSizes, ClusterBusy, ClusterNotActive, ClusterNotFound, ClusterRegionNotFound, NoAmi } from './clusters.errors.js'
import type { FleetProvider } from './fleet.provider.js'
import { recordAudit } from '../audit/audit.service.js'

export const createClusterJob = { family: 'fleet', name: 'createCluster' } as const
export const deleteClusterJob = { family: 'fleet', name: 'deleteCluster' } as const
export interface ClusterJobPayload { clusterId: string, jobId: string, step?: number }

export interface ClusterDeps {
  queue: JobQueue
  provider: FleetProvider
  /** Containers one host runs: a cluster's capacity is maxSize times this. */
  containersPerHost: number
  jobTimeoutMs: number
}

const live = ['creating', 'starting', 'available', 'in_use', 'stopping'] as const

async function audit (db: Kysely<DB>, actorId: string | null, action: string, clusterId: string, details: Record<string, unknown>) {
  await recordAudit(db, { action, actorId, target: { type: 'cluster', id: clusterId }, details })
}

export async function recordSteps (db: Kysely<DB>, id: string, steps: Partial<ClusterSteps>) {
  await db.updateTable('cluster').set({ steps: sql`steps || ${JSON.stringify(steps)}::jsonb`, updated_at: sql`now()` }).where('id', '=', id).execute()
}

/** Queues the creation of a cluster (launch template, Auto Scaling group, capacity provider, ECS cluster). */
export async function createCluster (
  db: Kysely<DB>, deps: ClusterDeps, actorId: string | null,
  input: { region: string, instanceType: string, ami?: string | undefined, minSize: number, maxSize: number }
): Promise<{ cluster: Cluster, job: Job }> {
  if (input.minSize > input.maxSize) throw new BadSizes(input.minSize, input.maxSize)
  const region = await db.selectFrom('region').select(['code', 'current_ami']).where('code', '=', input.region).executeTakeFirst()
  if (!region) throw new ClusterRegionNotFound(input.region)
  const ami = input.ami ?? region.current_ami
  if (!ami) throw new NoAmi(input.region)
  const name = `fractal-${input.region}-${randomBytes(3).toString('hex')}`
  const created = await db.transaction().execute(async (trx) => {
    const job = await trx.insertInto('job').values({ kind: 'create_cluster', owner_id: actorId, message: 'queued', deadline_at: new Date(Date.now() + deps.jobTimeoutMs) })
      .returningAll().executeTakeFirstOrThrow()
    const cluster = await trx.insertInto('cluster').values({
      region_code: input.region,
      name,
      status: 'creating',
      instance_type: input.instanceType,
      ami,
      min_size: input.minSize,
      max_size: input.maxSize,
      capacity: input.maxSize * deps.containersPerHost,
      job_id: job.id
    }).returningAll().executeTakeFirstOrThrow()
    await recordAudit(trx, { action: 'cluster.create', actorId, target: { type: 'cluster', id: cluster.id }, details: { name, ...input, ami } })
    return { cluster, job }
  })
  await deps.queue.enqueue<ClusterJobPayload>(createClusterJob, { clusterId: created.cluster.id, jobId: created.job.id }, { jobId: created.job.id, retries: 5 })
  return created
}

export async function listClusters (db: Kysely<DB>, filters: { limit: number, cursor?: string | undefined, region?: string | undefined, status?: ClusterStatus | undefined }) {
  const before = filters.cursor ? decodeKeyset(filters.cursor) : null
  const rows = await db.selectFrom('cluster').selectAll()
    .$if(filters.region !== undefined, (q) => q.where('region_code', '=', filters.region!))
    .$if(filters.status !== undefined, (q) => q.where('status', '=', filters.status!))
    .$if(filters.status === undefined, (q) => q.where('status', '!=', 'deleted'))
    .$if(before !== null, (q) => q.where((eb) => eb.or([
      eb('created_at', '<', before!.createdAt),
      eb.and([eb('created_at', '=', before!.createdAt), eb('id', '<', before!.id)])
    ])))
    .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filters.limit + 1).execute()
  return pageOf(rows, filters.limit)
}

export async function getCluster (db: Kysely<DB>, id: string): Promise<Cluster> {
  const cluster = await db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirst()
  if (!cluster) throw new ClusterNotFound(id)
  return cluster
}

export async function liveContainersIn (db: Kysely<DB>, clusterId: string): Promise<number> {
  const row = await db.selectFrom('container').select((eb) => eb.fn.countAll<number>().as('n'))
    .where('cluster_id', '=', clusterId).where('state', 'in', live).executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Live containers per cluster, for a page of clusters: one query. */
export async function liveContainersByCluster (db: Kysely<DB>, ids: string[]): Promise<Map<string, number>> {
  if (ids.length === 0) return new Map()
  const rows = await db.selectFrom('container').select(['cluster_id', (eb) => eb.fn.countAll<number>().as('n')])
    .where('cluster_id', 'in', ids).where('state', 'in', live).groupBy('cluster_id').execute()
  return new Map(rows.map((r) => [r.cluster_id!, Number(r.n)]))
}

/** A fresh usage snapshot from the cloud, kept on the row. */
export async function refreshUsage (db: Kysely<DB>, provider: FleetProvider, cluster: Pick<Cluster, 'id' | 'name' | 'region_code'>) {
  const usage = { ...(await provider.usage(cluster.region_code, cluster.name)), at: new Date().toISOString() }
  await db.updateTable('cluster').set({ usage: JSON.stringify(usage) }).where('id', '=', cluster.id).execute()
  return usage
}

/** The cluster-usage schedule's pass: every active cluster's usage refreshed; one that fails is logged and skipped. */
export async function refreshActiveClusters (db: Kysely<DB>, provider: FleetProvider, log: { warn (obj: object, msg: string): void }) {
  const active = await db.selectFrom('cluster').select(['id', 'name', 'region_code']).where('status', '=', 'active').execute()
  let refreshed = 0
  for (const cluster of active) {
    try {
      await refreshUsage(db, provider, cluster)
      refreshed++
    } catch (err) {
      log.warn({ err, cluster: cluster.name }, 'cluster usage not refreshed')
    }
  }
  return { refreshed }
}

/** New min/max for an active cluster's Auto Scaling group (audited; the capacity follows maxSize). */
export async function resizeCluster (db: Kysely<DB>, deps: ClusterDeps, actorId: string, id: string, input: { minSize?: number | undefined, maxSize?: number | undefined }) {
  const cluster = await getCluster(db, id)
  if (cluster.status !== 'active') throw new ClusterNotActive(id, cluster.status)
  const min = input.minSize ?? cluster.min_size
  const max = input.maxSize ?? cluster.max_size
  if (min > max) throw new BadSizes(min, max)
  await deps.provider.resizeGroup(cluster.region_code, cluster.name, { min, max })
  await db.updateTable('cluster').set({ min_size: min, max_size: max, capacity: max * deps.containersPerHost, updated_at: sql`now()` }).where('id', '=', id).execute()
  await audit(db, actorId, 'cluster.resize', id, { from: { min: cluster.min_size, max: cluster.max_size }, to: { min, max } })
  await refreshUsage(db, deps.provider, cluster).catch(() => null)
  return getCluster(db, id)
}

/**
 * Queues the teardown of a cluster. One with live containers is refused (409) unless `force`, which stops
 * them first; the job then drains the hosts and deletes, in order, what the creation made.
 */
export async function deleteCluster (db: Kysely<DB>, deps: ClusterDeps, actorId: string | null, id: string, force: boolean): Promise<{ cluster: Cluster, job: Job }> {
  const cluster = await getCluster(db, id)
  if (cluster.status === 'creating') throw new ClusterNotActive(id, cluster.status)
  const liveCount = await liveContainersIn(db, id)
  if (liveCount > 0 && !force) throw new ClusterBusy(id, liveCount)
  const created = await db.transaction().execute(async (trx) => {
    const job = await trx.insertInto('job').values({
      kind: 'delete_cluster',
      owner_id: actorId,
      message: cluster.status === 'deleted' ? 'already deleted' : 'queued',
      deadline_at: new Date(Date.now() + deps.jobTimeoutMs),
      ...(cluster.status === 'deleted' ? { state: 'succeeded', progress: 100 } : {})
    }).returningAll().executeTakeFirstOrThrow()
    if (cluster.status === 'deleted') return { cluster, job, queued: false }
    const updated = await trx.updateTable('cluster').set({ status: 'deleting', job_id: job.id, updated_at: sql`now()` }).where('id', '=', id).returningAll().executeTakeFirstOrThrow()
    await recordAudit(trx, { action: 'cluster.delete', actorId, target: { type: 'cluster', id }, details: { force, liveContainers: liveCount } })
    return { cluster: updated, job, queued: true }
  })
  if (created.queued) {
    if (liveCount > 0) await stopContainersOfCluster(db, deps, id)
    await deps.queue.enqueue<ClusterJobPayload>(deleteClusterJob, { clusterId: id, jobId: created.job.id }, { jobId: created.job.id, retries: 5 })
  }
  return { cluster: created.cluster, job: created.job }
}
