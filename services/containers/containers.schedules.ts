// The worker's schedules for containers: keep warm pools full, reap what died or got stuck, and stop
// tasks that run in the cloud without a container of ours. Each is one pass, safe to run again at any
// time; plugins/schedules.ts runs them under a Redis lock so one worker at a time does.
import { sql, type Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { hashToId, newSecret } from '../hashing.js'
import type { JobQueue } from '../queue.js'
import * as repo from './containers.repository.js'
import { warmPools } from './containers.warm-pools.js'
import { recordAudit } from '../audit/audit.service.js'
import { createStartingContainer, enqueueStart, startJobOf } from './containers.assignment.js'
import { failStart, type StartEnder } from './containers.lifecycle.js'

const live = ['creating', 'starting', 'available', 'in_use'] as const

/**
 * Starts containers for every warm pool below its target (counting those already starting), at most
 * `maxStarts` per pool and pass; skips disabled regions and regions in maintenance.
 */
export async function refillWarmPools (db: Kysely<DB>, deps: { queue: JobQueue, startTimeoutMs: number, maxStarts: number }) {
  const closed = new Set((await db.selectFrom('maintenance').select('scope').where('ends_at', '>', sql<Date>`now()`).execute()).map((w) => w.scope))
  if (closed.has('global')) return { started: 0 }
  const pools = (await warmPools(db)).filter((p) => p.enabled && !closed.has(p.region_code))
  const wanted = pools.flatMap((p) => {
    const missing = Math.min(deps.maxStarts, p.warm_pool_target - Number(p.ready) - Number(p.starting))
    return Array.from({ length: Math.max(0, missing) }, () => ({ app: p.app_id, region: p.region_code, secret: newSecret() }))
  })
  if (wanted.length === 0) return { started: 0 }
  const created = await db.transaction().execute(async (trx) => {
    const out = []
    for (const w of wanted) {
      const { container, job } = await createStartingContainer(trx, { user_id: null, app_id: w.app, region_code: w.region, secret: w.secret }, deps.startTimeoutMs)
      out.push({ containerId: container.id, jobId: job.id, secret: w.secret, warm: true })
    }
    return out
  })
  for (const payload of created) await enqueueStart(deps.queue, payload)
  return { started: created.length }
}

/** Ready containers that stopped pinging: failed, their task stopped, their connections closed. */
export async function reapSilent (db: Kysely<DB>, deps: StartEnder, pingTimeoutMs: number) {
  const cutoff = new Date(Date.now() - pingTimeoutMs)
  const silent = await db.selectFrom('container').selectAll()
    .where('state', 'in', ['available', 'in_use'])
    .where((eb) => eb(eb.fn.coalesce('last_ping_at', 'running_at', 'updated_at'), '<', cutoff))
    .limit(500).execute()
  let reaped = 0
  for (const container of silent) {
    const reason = `no ping for ${Math.round(pingTimeoutMs / 1000)} s`
    const gone = await db.transaction().execute(async (trx) => {
      const row = await trx.updateTable('container').set({ state: 'failed', failure_reason: reason, client_connected: false, updated_at: sql`now()` })
        .where('id', '=', container.id).where('state', 'in', ['available', 'in_use'])
        .where((eb) => eb(eb.fn.coalesce('last_ping_at', 'running_at', 'updated_at'), '<', cutoff))
        .returningAll().executeTakeFirst()
      if (!row) return null
      await repo.closeSessions(trx, container.id)
      await repo.insertContainerEvent(trx, { container_id: container.id, from_state: container.state, to_state: 'failed', reason })
      return row
    })
    if (!gone) continue
    reaped++
    if (gone.task_arn) {
      const cluster = gone.cluster_id ? await repo.findClusterById(db, gone.cluster_id) : undefined
      await deps.provider.stopTask(gone.region_code, cluster?.name ?? `fractal-${gone.region_code}-1`, gone.task_arn, reason).catch(() => {})
    }
  }
  return { reaped }
}

/** Jobs past their deadline: a start fails (`start_timeout`, task stopped), any other job fails. */
export async function reapStuckJobs (db: Kysely<DB>, deps: StartEnder) {
  const stuck = await db.selectFrom('job').select(['id', 'kind'])
    .where('state', 'in', ['queued', 'running']).where('deadline_at', '<', sql<Date>`now()`)
    .limit(500).execute()
  for (const job of stuck) {
    const container = job.kind === 'start_container'
      ? await db.selectFrom('container').selectAll().where('start_job_id', '=', job.id).executeTakeFirst()
      : undefined
    if (container) await failStart(deps, container, job.id, 'start_timeout', 'the container did not start before the job deadline')
    else await repo.updateJob(db, job.id, { state: 'failed', progress: 100, error_code: 'deadline_exceeded', message: 'the job did not finish before its deadline' })
  }
  return { failed: stuck.length }
}

/**
 * Start jobs nobody works on (their enqueue failed after commit, or the queue lost them): enqueued again.
 * A start that has not placed its task yet gets a new secret (the old one was only in the lost payload).
 */
export async function resumeStalledStarts (db: Kysely<DB>, deps: { queue: JobQueue }, stalledMs: number) {
  const stalled = await db.selectFrom('job')
    .innerJoin('container', 'container.start_job_id', 'job.id')
    .select(['job.id as jobId', 'container.id as containerId', 'container.task_arn', 'container.user_id'])
    .where('job.kind', '=', 'start_container').where('job.state', 'in', ['queued', 'running'])
    .where((eb) => eb.or([eb('job.needs_enqueue', '=', true), eb('job.updated_at', '<', new Date(Date.now() - stalledMs))]))
    .where('container.state', 'in', ['creating', 'starting'])
    .limit(500).execute()
  for (const s of stalled) {
    const secret = s.task_arn ? '' : newSecret()
    if (secret) await repo.updateContainer(db, s.containerId, { secret_hash: hashToId(secret) })
    await repo.updateJob(db, s.jobId, { needs_enqueue: false, message: 'resumed after the queue lost it' })
    const payload = { containerId: s.containerId, jobId: s.jobId, secret, step: 0, ...(s.user_id === null ? { warm: true } : {}) }
    await deps.queue.enqueue(startJobOf(payload), payload, { jobId: `${s.jobId}:resume:${Date.now()}`, retries: 3 })
  }
  return { resumed: stalled.length }
}

/**
 * Tasks running in a cluster that no live container of ours claims, older than the grace: stopped. Each
 * cluster on its own: one whose ECS cluster is gone (ClusterNotFoundException) is marked `failed` (no new
 * container is placed there, the scaling schedule stops counting it, an operator's DELETE clears what is
 * left) and audited; any other error is counted and the pass goes on with the next cluster.
 */
export async function reapOrphans (db: Kysely<DB>, deps: StartEnder & { log?: { warn (obj: object, msg: string): void } }, graceMs: number) {
  const clusters = await db.selectFrom('cluster').select(['id', 'name', 'region_code']).where('status', '=', 'active').orderBy('created_at').execute()
  let stopped = 0
  let lost = 0
  let errors = 0
  for (const cluster of clusters) {
    try {
      stopped += await reapOrphansOf(db, deps, cluster, graceMs)
    } catch (err) {
      if ((err as Error).name === 'ClusterNotFoundException') {
        if (await markLost(db, cluster.id, `ECS has no cluster named ${cluster.name} in ${cluster.region_code}`)) lost++
        deps.log?.warn({ cluster: cluster.name, region: cluster.region_code }, 'orphan reaper: the ECS cluster is gone; cluster marked failed')
        continue
      }
      errors++
      deps.log?.warn({ err, cluster: cluster.name }, 'orphan reaper: this cluster was skipped')
    }
  }
  return { stopped, lost, errors }
}

async function reapOrphansOf (db: Kysely<DB>, deps: StartEnder, cluster: { name: string, region_code: string }, graceMs: number) {
  const tasks = await deps.provider.listTasks(cluster.region_code, cluster.name)
  if (tasks.length === 0) return 0
  const known = new Set((await db.selectFrom('container').select('task_arn')
    .where('task_arn', 'in', tasks.map((t) => t.taskArn)).where('state', 'in', [...live, 'stopping']).execute()).map((r) => r.task_arn))
  // A task placed a moment ago may not be recorded yet: its container (startedBy) is still starting.
  const startingIds = tasks.map((t) => t.startedBy).filter((id): id is string => !!id && /^[0-9a-f-]{36}$/i.test(id))
  const starting = new Set(startingIds.length === 0
    ? []
    : (await db.selectFrom('container').select('id').where('id', 'in', startingIds).where('state', 'in', ['creating', 'starting']).execute()).map((r) => r.id))
  const cutoff = Date.now() - graceMs
  let stopped = 0
  for (const task of tasks) {
    if (known.has(task.taskArn) || (task.startedBy && starting.has(task.startedBy))) continue
    if (task.createdAt && task.createdAt.getTime() > cutoff) continue
    await deps.provider.stopTask(cluster.region_code, cluster.name, task.taskArn, 'orphaned: no Fractal container runs here')
    stopped++
  }
  return stopped
}

/** An active cluster whose ECS cluster is gone: failed (once, audited). */
async function markLost (db: Kysely<DB>, clusterId: string, reason: string) {
  return db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('cluster').set({ status: 'failed', updated_at: sql`now()` })
      .where('id', '=', clusterId).where('status', '=', 'active').returning('id').executeTakeFirst()
    if (row) await recordAudit(trx, { action: 'cluster.lost', actorId: null, target: { type: 'cluster', id: clusterId }, details: { reason } })
    return !!row
  })
}
