// AMI rolls: a region moves to a new AMI, one cluster at a time. The parent job (`roll_ami`) makes one child
// job per active cluster (`roll_cluster`): a new launch template version on the AMI, then an instance
// refresh of the group, followed until it ends. The region's current AMI changes at once (new clusters use
// it); each cluster's when its refresh succeeds. A failed refresh stops the roll: the clusters after it keep
// their AMI and their child jobs are cancelled.
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB, Job } from '../../db/types.js'
import { isTransient } from '../containers/provider.js'
import { defineError } from '../errors.js'
import type { JobDefinition, JobQueue } from '../queue.js'
import type { FleetProvider } from './fleet.provider.js'
import { recordAudit } from '../audit/audit.service.js'

export const RollRegionNotFound = defineError('not_found', 'Region not found', (code: string) => `Region ${code} does not exist.`)
export const RollNeedsMaintenance = defineError('conflict', 'Not in maintenance',
  (region: string) => `Region ${region} is not in a maintenance window: open one (PUT /v1/admin/maintenance) or roll with strategy "rolling".`)
export const RollInProgress = defineError('conflict', 'AMI roll in progress', (region: string, jobId: string) => `Region ${region} is already rolling (job ${jobId}).`)

export const rollAmiJob = { family: 'fleet', name: 'rollAmi' } as const
export interface RollAmiPayload { jobId: string, region: string, ami: string, minHealthyPercent: number, step?: number }

export interface RollDeps { queue: JobQueue, provider: FleetProvider, pollMs: number, jobTimeoutMs: number }

/** Starts a roll: 202 with the parent job. `maintenance` replaces hosts fast; `rolling` keeps 90 % in service. */
export async function rollAmi (db: Kysely<DB>, deps: RollDeps, actorId: string, region: string, input: { ami: string, strategy?: 'maintenance' | 'rolling' | undefined }): Promise<Job> {
  const strategy = input.strategy ?? 'maintenance'
  const found = await db.selectFrom('region').select(['code', 'current_ami']).where('code', '=', region).executeTakeFirst()
  if (!found) throw new RollRegionNotFound(region)
  if (strategy === 'maintenance') {
    const window = await db.selectFrom('maintenance').select('scope').where('scope', 'in', ['global', region]).where('ends_at', '>', sql<Date>`now()`).executeTakeFirst()
    if (!window) throw new RollNeedsMaintenance(region)
  }
  const job = await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(hashtextextended(${`ami-roll:${region}`}, 0))`.execute(trx)
    const running = await trx.selectFrom('job').select('id').where('kind', '=', 'roll_ami').where('state', 'in', ['queued', 'running'])
      .where(sql<boolean>`result->>'region' = ${region}`).executeTakeFirst()
    if (running) throw new RollInProgress(region, running.id)
    const parent = await trx.insertInto('job').values({
      kind: 'roll_ami',
      owner_id: actorId,
      message: 'queued',
      deadline_at: new Date(Date.now() + deps.jobTimeoutMs),
      result: JSON.stringify({ region, ami: input.ami, from: found.current_ami, strategy })
    }).returningAll().executeTakeFirstOrThrow()
    const clusters = await trx.selectFrom('cluster').select(['id', 'name']).where('region_code', '=', region).where('status', '=', 'active').orderBy('created_at').execute()
    // One child per cluster, in the clusters' order (clock_timestamp: distinct times within the transaction).
    for (const c of clusters) {
      await trx.insertInto('job').values({
        kind: 'roll_cluster', owner_id: actorId, parent_id: parent.id, message: 'waiting for its turn', result: JSON.stringify({ clusterId: c.id, cluster: c.name }), created_at: sql`clock_timestamp()`
      }).execute()
    }
    await trx.updateTable('region').set({ current_ami: input.ami, updated_at: sql`now()` }).where('code', '=', region).execute()
    await recordAudit(trx, { action: 'region.ami_roll', actorId, target: { type: 'region', id: region }, details: { from: found.current_ami, to: input.ami, strategy, clusters: clusters.length } })
    return parent
  })
  await deps.queue.enqueue<RollAmiPayload>(rollAmiJob, { jobId: job.id, region, ami: input.ami, minHealthyPercent: strategy === 'rolling' ? 90 : 0 }, { jobId: job.id, retries: 5 })
  return job
}

export function childrenOf (db: Kysely<DB>, parentId: string) {
  return db.selectFrom('job').selectAll().where('parent_id', '=', parentId).orderBy('created_at').orderBy('id').execute()
}

const setJob = (db: Kysely<DB>, id: string, changes: Record<string, unknown>) =>
  db.updateTable('job').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).where('state', '!=', 'cancelled').execute()

/** One step of a roll: start or follow the current cluster's refresh, then the next; re-enqueues itself while waiting. */
async function rollStep (db: Kysely<DB>, deps: RollDeps, data: RollAmiPayload, lastAttempt: boolean) {
  const parent = await db.selectFrom('job').selectAll().where('id', '=', data.jobId).executeTakeFirst()
  if (!parent || ['succeeded', 'failed', 'cancelled'].includes(parent.state)) return { done: true }
  const children = await childrenOf(db, data.jobId)
  const finished = children.filter((c) => c.state === 'succeeded').length
  const current = children.find((c) => c.state === 'queued' || c.state === 'running')
  if (!current) {
    await setJob(db, data.jobId, { state: 'succeeded', progress: 100, message: `${finished} cluster${finished === 1 ? '' : 's'} on ${data.ami}` })
    return { done: true }
  }
  const ref = current.result as { clusterId: string, cluster: string, version?: string, refreshId?: string }
  const cluster = await db.selectFrom('cluster').select(['id', 'name', 'region_code', 'steps', 'status']).where('id', '=', ref.clusterId).executeTakeFirst()
  try {
    if (!cluster || cluster.status !== 'active' || !cluster.steps.launchTemplateId) {
      // Gone meanwhile, or made outside Fractal (no launch template of ours): nothing to roll.
      await setJob(db, current.id, { state: 'succeeded', progress: 100, message: cluster ? 'skipped: not a cluster Fractal manages' : 'skipped: the cluster is gone' })
      return next(db, deps, data)
    }
    const launchTemplateId = cluster.steps.launchTemplateId
    if (!ref.version && !ref.refreshId) {
      // Made once, and recorded before anything else: a retry uses this version, never makes another (the
      // child job's id is the request's idempotency token, for an answer lost on the way).
      const { version } = await deps.provider.createAmiVersion(cluster.region_code, cluster.name, launchTemplateId, data.ami, current.id)
      ref.version = version
      await setJob(db, current.id, { state: 'running', progress: 2, message: `launch template version ${version} on ${data.ami}`, result: JSON.stringify(ref) })
    }
    if (!ref.refreshId) {
      const { refreshId } = await deps.provider.startAmiRefresh(cluster.region_code, cluster.name, launchTemplateId, ref.version!, data.minHealthyPercent)
      await setJob(db, current.id, { state: 'running', progress: 5, message: 'instance refresh started', result: JSON.stringify({ ...ref, refreshId }) })
      await setJob(db, data.jobId, { state: 'running', message: `rolling ${cluster.name}` })
      return later(db, deps, data)
    }
    const status = await deps.provider.amiRefreshStatus(cluster.region_code, cluster.name, ref.refreshId)
    if (status.state === 'in_progress') {
      await setJob(db, current.id, { progress: Math.min(99, Math.max(5, status.percent)), message: `instance refresh ${status.percent} %` })
      await setJob(db, data.jobId, { progress: Math.floor(((finished + status.percent / 100) / children.length) * 100), message: `rolling ${cluster.name}` })
      return later(db, deps, data)
    }
    if (status.state === 'failed') {
      await db.transaction().execute(async (trx) => {
        await trx.updateTable('job').set({ state: 'failed', progress: 100, error_code: 'instance_refresh_failed', message: status.reason ?? 'the instance refresh failed', updated_at: sql`now()` }).where('id', '=', current.id).execute()
        await trx.updateTable('job').set({ state: 'cancelled', message: 'not rolled: an earlier cluster failed', updated_at: sql`now()` })
          .where('parent_id', '=', data.jobId).where('state', 'in', ['queued', 'running']).execute()
        await trx.updateTable('job').set({ state: 'failed', progress: 100, error_code: 'ami_roll_failed', message: `${cluster.name}: ${status.reason ?? 'instance refresh failed'}`, updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
      })
      return { failed: true }
    }
    // The group moved to the version with the refresh; the template's default follows, so both say what runs.
    // (A refresh started before versions were recorded on the job has none to adopt.)
    if (ref.version) await deps.provider.adoptVersion(cluster.region_code, cluster.name, launchTemplateId, ref.version)
    await db.transaction().execute(async (trx) => {
      await trx.updateTable('cluster').set({ ami: data.ami, steps: sql`steps || ${JSON.stringify(ref.version ? { launchTemplateVersion: ref.version } : {})}::jsonb`, updated_at: sql`now()` })
        .where('id', '=', cluster.id).execute()
      await trx.updateTable('job').set({ state: 'succeeded', progress: 100, message: `on ${data.ami}`, updated_at: sql`now()` }).where('id', '=', current.id).execute()
    })
    return next(db, deps, data)
  } catch (err) {
    if (isTransient(err) && !lastAttempt) throw err
    await setJob(db, current.id, { state: 'failed', progress: 100, error_code: 'instance_refresh_failed', message: (err as Error).message.slice(0, 500) })
    await db.updateTable('job').set({ state: 'cancelled', message: 'not rolled: an earlier cluster failed', updated_at: sql`now()` }).where('parent_id', '=', data.jobId).where('state', 'in', ['queued', 'running']).execute()
    await setJob(db, data.jobId, { state: 'failed', progress: 100, error_code: 'ami_roll_failed', message: (err as Error).message.slice(0, 500) })
    return { failed: true }
  }
}

async function later (_db: Kysely<DB>, deps: RollDeps, data: RollAmiPayload) {
  const step = (data.step ?? 0) + 1
  await deps.queue.enqueue<RollAmiPayload>(rollAmiJob, { ...data, step }, { jobId: `${data.jobId}:${step}`, delayMs: deps.pollMs, retries: 5 })
  return { waiting: true }
}

/** The next cluster at once (no delay between a finished refresh and the next start). */
async function next (db: Kysely<DB>, deps: RollDeps, data: RollAmiPayload) {
  const step = (data.step ?? 0) + 1
  await deps.queue.enqueue<RollAmiPayload>(rollAmiJob, { ...data, step }, { jobId: `${data.jobId}:${step}`, retries: 5 })
  return { next: true }
}

export function createRollJobs (db: Kysely<DB>, deps: RollDeps): JobDefinition[] {
  return [{ ...rollAmiJob, handle: (data: RollAmiPayload, ctx) => rollStep(db, deps, data, ctx.lastAttempt) }]
}
