// The worker's schedules for containers: keep warm pools full, reap what died or got stuck, and stop
// tasks that run in the cloud without a container of ours. Each is one pass, safe to run again at any
// time; plugins/schedules.ts runs them under a Redis lock so one worker at a time does.
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import { hashToId, newSecret } from '../hashing.js'
import type { JobQueue } from '../queue.js'
import * as repo from './containers.repository.js'
import { poolStatuses, recordPass, type PassOutcome, type PoolStatus } from './containers.warm-pools.js'
import type { Clock } from '../clock.js'
import { recordAudit } from '../audit/audit.service.js'
import { createStartingContainer, enqueueStart, startJobOf } from './containers.assignment.js'
import { failStart, queueStop, type StartEnder } from './containers.lifecycle.js'

const live = ['creating', 'starting', 'available', 'in_use'] as const

export interface RefillDeps {
  queue: JobQueue
  startTimeoutMs: number
  /** Starts per pool and pass, at most. */
  maxStarts: number
  /** WARM_POOL_MAX_AGE_S: the maximum age of a warm container in a pool without its own (0: none). */
  maxAgeSeconds: number
  clock: Clock
}

/**
 * The reconciliation pass of the warm pools. Per pool: the desired count is the schedule in force, else the
 * base target. A paused pool, a disabled region and a region (or everything) in maintenance are left alone.
 * Otherwise unheld ready containers above the desired count are stopped, oldest first (those past the
 * maximum age before any other), and missing ones are started (at most `maxStarts` per pool and pass),
 * counting those on their way and not counting those past the maximum age: so an expired container is
 * replaced first and stopped once its replacement is ready, and the pool never drops below what it keeps.
 * A container in use is never stopped. Each pool's decision is recorded (warm_pool.last_*).
 */
export async function refillWarmPools (db: Kysely<DB>, deps: RefillDeps) {
  const now = new Date(deps.clock.now())
  const closed = new Set((await db.selectFrom('maintenance').select('scope').where('ends_at', '>', sql<Date>`now()`).execute()).map((w) => w.scope))
  const pools = await poolStatuses(db, { now, defaultMaxAgeSeconds: deps.maxAgeSeconds })
  const wanted: Array<{ app: string, region: string, secret: string }> = []
  const outcomes: Array<{ pool: PoolStatus, outcome: PassOutcome }> = []
  const toStop: Array<{ pool: PoolStatus, count: number, reason: string }> = []
  for (const pool of pools) {
    const desired = pool.desired
    const base = `desired ${desired} (${pool.schedule ? `schedule ${pool.schedule.id}` : 'base target'}); ${pool.available} ready, ${pool.starting} starting`
    if (pool.paused) {
      outcomes.push({ pool, outcome: { decision: 'paused', desired, started: 0, stopped: 0, reason: `${base}: paused, left alone` } })
      continue
    }
    if (!pool.enabled || closed.has('global') || closed.has(pool.region)) {
      const why = !pool.enabled ? 'the region is disabled' : 'maintenance'
      outcomes.push({ pool, outcome: { decision: 'closed', desired, started: 0, stopped: 0, reason: `${base}: ${why}, left alone` } })
      continue
    }
    const fresh = pool.available - pool.expired
    const surplus = Math.max(0, pool.available - desired)
    // Expired ones go first, so what stays is as fresh as can be.
    const keptFresh = fresh - Math.max(0, surplus - pool.expired)
    const starts = Math.max(0, Math.min(deps.maxStarts, desired - keptFresh - pool.starting))
    const expiredKept = pool.expired - Math.min(pool.expired, surplus)
    const notes = [
      ...(surplus > 0 ? [`stop ${surplus} above the desired count`] : []),
      ...(pool.expired > 0 ? [`${pool.expired} ${expiredWhy(pool)}${expiredKept > 0 ? `, ${expiredKept} kept until replaced` : ''}`] : []),
      ...(starts > 0 ? [`start ${starts}`] : [])
    ]
    if (surplus > 0) toStop.push({ pool, count: surplus, reason: pool.expired > 0 ? `warm pool: ${pool.recycleBefore ? 'recycled or ' : ''}past its maximum age, replaced` : 'warm pool: above the desired count' })
    for (let i = 0; i < starts; i++) wanted.push({ app: pool.app, region: pool.region, secret: newSecret() })
    const decision = starts > 0 && surplus > 0 ? 'rebalance' : starts > 0 ? 'grow' : surplus > 0 ? 'shrink' : 'steady'
    outcomes.push({ pool, outcome: { decision, desired, started: starts, stopped: surplus, reason: `${base}${notes.length ? ': ' + notes.join('; ') : ''}` } })
  }

  let stopped = 0
  const stoppedOf = new Map<PoolStatus, number>()
  for (const s of toStop) {
    const n = await retireWarm(db, deps, s.pool, s.count, s.reason)
    stoppedOf.set(s.pool, n)
    stopped += n
  }
  const created = wanted.length === 0
    ? []
    : await db.transaction().execute(async (trx) => {
      const out = []
      for (const w of wanted) {
        const { container, job } = await createStartingContainer(trx, { user_id: null, app_id: w.app, region_code: w.region, secret: w.secret }, deps.startTimeoutMs)
        out.push({ containerId: container.id, jobId: job.id, secret: w.secret, warm: true })
      }
      return out
    })
  for (const payload of created) await enqueueStart(deps.queue, payload)
  for (const { pool, outcome } of outcomes) {
    // A claim may have taken one meant to be stopped: the record says what was done.
    const done = stoppedOf.get(pool)
    await recordPass(db, pool.app, pool.region, now, done === undefined ? outcome : { ...outcome, stopped: done })
  }
  return { started: created.length, stopped }
}

/** Why a pool's expired containers are: past its maximum age, made before its last forced recycle, or either. */
function expiredWhy (pool: PoolStatus) {
  return [
    ...(pool.effectiveMaxAgeSeconds > 0 ? [`past the maximum age of ${pool.effectiveMaxAgeSeconds} s`] : []),
    ...(pool.recycleBefore ? [`made before the recycle at ${pool.recycleBefore.toISOString()}`] : [])
  ].join(' or ')
}

/**
 * Stops up to `count` of a pool's unheld ready containers, oldest first. Each is taken from the pool with SKIP
 * LOCKED and only while still unheld and ready, so a claim in flight keeps its container; a container in use
 * is never touched. Answers how many were stopped.
 */
async function retireWarm (db: Kysely<DB>, deps: Pick<RefillDeps, 'queue'>, pool: PoolStatus, count: number, reason: string) {
  const retired = await db.transaction().execute(async (trx) => {
    // Picked first, then changed: as an `in (subquery)` the limited, locking pick may run once per row.
    const picked = await trx.selectFrom('container').select('id')
      .where('app_id', '=', pool.app).where('region_code', '=', pool.region).where('state', '=', 'available').where('user_id', 'is', null)
      .orderBy('created_at').limit(count).forUpdate().skipLocked().execute()
    // None picked: `in ()` is not SQL.
    if (picked.length === 0) return []
    const rows = await trx.updateTable('container').set({ state: 'stopping', updated_at: sql`now()` })
      .where('id', 'in', picked.map((p) => p.id)).where('state', '=', 'available').where('user_id', 'is', null)
      .returningAll().execute()
    for (const row of rows) await repo.insertContainerEvent(trx, { container_id: row.id, from_state: 'available', to_state: 'stopping', reason })
    return rows
  })
  for (const container of retired) await queueStop(db, deps, container)
  return retired.length
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
