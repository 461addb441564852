// Warm pools: per app and region, how many ready unheld containers to keep (the base target, or the
// schedule in force), what is there now, the pool's own settings (paused, maximum age) and the outcome of
// the last reconciliation pass (refillWarmPools in containers.schedules.ts). docs/warm-pools.md.
import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB, WarmPoolDecision, WarmPoolSchedule, Weekday } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import { defineError, fieldErrors } from '../errors.js'
import { decodeCursor, pageOf } from '../pagination.js'
import { PoolNotFound } from './containers.errors.js'

type Db = Kysely<DB> | Transaction<DB>

export const ScheduleNotFound = defineError('not_found', 'Schedule not found',
  (id: string, app: string, region: string) => `The warm pool of ${app} in ${region} has no schedule ${id}.`)
export const ScheduleOverlap = defineError('unprocessable', 'Schedules overlap',
  (other: WarmPoolSchedule) => `This schedule overlaps schedule ${other.id}${other.name ? ` (${other.name})` : ''}: ${describe(other)}. Change its days or hours, or delete that one first.`,
  (other: WarmPoolSchedule) => fieldErrors('/body/days', `overlaps schedule ${other.id}`))
export const ScheduleTimeZoneMismatch = defineError('unprocessable', 'One time zone per pool',
  (other: WarmPoolSchedule) => `The pool's schedules are in ${other.time_zone} (schedule ${other.id}); give this one the same time zone.`,
  (other: WarmPoolSchedule) => fieldErrors('/body/timeZone', `differs from ${other.time_zone} of schedule ${other.id}`))
export const UnknownTimeZone = defineError('unprocessable', 'Unknown time zone',
  (zone: string) => `${zone} is not an IANA time zone this server knows (e.g. Europe/Paris, America/New_York, UTC).`,
  () => fieldErrors('/body/timeZone', 'is not a known IANA time zone'))
export const TooManySchedules = defineError('unprocessable', 'Too many schedules',
  (max: number) => `A pool has at most ${max} schedules; delete one first.`,
  () => fieldErrors('/body', 'too many schedules for this pool'))

const maxSchedules = 50
/** Failed starts counted as `failing`: those of the last hour. */
const failingWindowMs = 3_600_000
export const weekdays: readonly Weekday[] = ['mon', 'tue', 'wed', 'thu', 'fri', 'sat', 'sun']
const week = 7 * 1440

// ---- time-zone math (Intl only) -------------------------------------------------------------------------

const formats = new Map<string, Intl.DateTimeFormat>()
function formatOf (zone: string) {
  let f = formats.get(zone)
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone: zone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' })
    formats.set(zone, f)
  }
  return f
}

/** The zone's canonical name, or null when Intl does not know it. */
export function canonicalTimeZone (zone: string): string | null {
  try {
    return new Intl.DateTimeFormat('en-US', { timeZone: zone }).resolvedOptions().timeZone
  } catch {
    return null
  }
}

/** Minutes since Monday 00:00 of the wall clock in `zone` at `instant`. */
export function weekMinute (instant: Date, zone: string): number {
  const parts = Object.fromEntries(formatOf(zone).formatToParts(instant).map((p) => [p.type, p.value]))
  const day = weekdays.indexOf(parts.weekday!.toLowerCase() as Weekday)
  return day * 1440 + Number(parts.hour) * 60 + Number(parts.minute)
}

type Window = Pick<WarmPoolSchedule, 'days' | 'start_minute' | 'end_minute'>

/** A schedule's wall-clock intervals in the week, [from, to) in minutes since Monday 00:00, wrapped at Sunday's end. */
function intervals (s: Window): Array<[number, number]> {
  const length = s.end_minute > s.start_minute ? s.end_minute - s.start_minute : s.end_minute + 1440 - s.start_minute
  return s.days.flatMap((day): Array<[number, number]> => {
    const from = weekdays.indexOf(day) * 1440 + s.start_minute
    const to = from + length
    return to <= week ? [[from, to]] : [[from, week], [0, to - week]]
  })
}

function overlaps (a: Window, b: Window) {
  return intervals(a).some(([f1, t1]) => intervals(b).some(([f2, t2]) => f1 < t2 && f2 < t1))
}

/** The schedule in force at `instant` among one pool's (they never overlap), or null. */
export function scheduleInForce<S extends WarmPoolSchedule> (schedules: readonly S[], instant: Date): S | null {
  for (const s of schedules) {
    const m = weekMinute(instant, s.time_zone)
    if (intervals(s).some(([from, to]) => m >= from && m < to)) return s
  }
  return null
}

const hhmm = (minutes: number) => `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`
export const minutesOf = (time: string) => Number(time.slice(0, 2)) * 60 + Number(time.slice(3, 5))

function describe (s: WarmPoolSchedule) {
  return `${s.days.join(',')} ${hhmm(s.start_minute)}-${hhmm(s.end_minute)} ${s.time_zone} → ${s.desired}`
}

// ---- reading pools --------------------------------------------------------------------------------------

export interface PoolFilters { app?: string | undefined, region?: string | undefined }

/** Per app and region: the warm-pool target, and how many unheld containers are ready or on their way. */
export function warmPools (db: Kysely<DB>, filters: PoolFilters = {}) {
  return db.selectFrom('app_region')
    .innerJoin('region', 'region.code', 'app_region.region_code')
    .innerJoin('app', 'app.id', 'app_region.app_id')
    .leftJoin('container', (j) => j.onRef('container.app_id', '=', 'app_region.app_id').onRef('container.region_code', '=', 'app_region.region_code')
      .on('container.user_id', 'is', null).on('container.state', 'in', ['creating', 'starting', 'available']))
    .select([
      'app_region.app_id', 'app_region.region_code', 'app_region.warm_pool_target',
      // A pool is kept only where the region, the app and the app in that region are all enabled.
      sql<boolean>`region.enabled and app.enabled and app_region.enabled`.as('enabled'),
      (eb) => eb.fn.count<number>('container.id').filterWhere('container.state', '=', 'available').as('ready'),
      (eb) => eb.fn.count<number>('container.id').filterWhere('container.state', 'in', ['creating', 'starting']).as('starting')
    ])
    .$if(filters.app !== undefined, (q) => q.where('app_region.app_id', '=', filters.app!))
    .$if(filters.region !== undefined, (q) => q.where('app_region.region_code', '=', filters.region!))
    .groupBy(['app_region.app_id', 'app_region.region_code', 'app_region.warm_pool_target', 'region.enabled', 'app.enabled', 'app_region.enabled'])
    .orderBy('app_region.app_id').orderBy('app_region.region_code')
    .execute()
}

/** A pool as the reconciliation pass and operators see it. */
export interface PoolStatus {
  app: string
  region: string
  enabled: boolean
  target: number
  desired: number
  schedule: WarmPoolSchedule | null
  available: number
  /** Available ones older than the maximum age, or made before a forced recycle (to be replaced). */
  expired: number
  starting: number
  inUse: number
  failing: number
  paused: boolean
  pausedAt: Date | null
  maxAgeSeconds: number | null
  effectiveMaxAgeSeconds: number
  /** The last forced recycle: warm containers made before it are replaced. */
  recycleBefore: Date | null
  lastPass: { at: Date, decision: WarmPoolDecision, desired: number, started: number, stopped: number, reason: string } | null
}

export interface PoolReadOptions extends PoolFilters {
  /** The time schedules and ages are judged at (the app's clock). */
  now: Date
  /** WARM_POOL_MAX_AGE_S: the maximum age of a pool without its own (0: none). */
  defaultMaxAgeSeconds: number
  page?: { limit: number, after: { app: string, region: string } | null }
}

/** Every pool (or one page of them, by app then region) with its counts, settings, schedule in force and last pass. */
export async function poolStatuses (db: Db, options: PoolReadOptions): Promise<PoolStatus[]> {
  const { now } = options
  const failingSince = new Date(now.getTime() - failingWindowMs)
  const maxAge = sql<number>`coalesce(warm_pool.max_age_seconds, ${options.defaultMaxAgeSeconds}::integer)`
  const rows = await db.selectFrom('app_region')
    .innerJoin('region', 'region.code', 'app_region.region_code')
    .innerJoin('app', 'app.id', 'app_region.app_id')
    .leftJoin('warm_pool', (j) => j.onRef('warm_pool.app_id', '=', 'app_region.app_id').onRef('warm_pool.region_code', '=', 'app_region.region_code'))
    .leftJoin('container', (j) => j.onRef('container.app_id', '=', 'app_region.app_id').onRef('container.region_code', '=', 'app_region.region_code')
      .on((eb) => eb.or([
        eb('container.state', 'in', ['creating', 'starting', 'available', 'in_use']),
        eb.and([eb('container.state', '=', 'failed'), eb('container.user_id', 'is', null), eb('container.updated_at', '>', failingSince)])
      ])))
    .select((eb) => [
      'app_region.app_id', 'app_region.region_code', 'app_region.warm_pool_target',
      // A pool is kept only where the region, the app and the app in that region are all enabled.
      sql<boolean>`region.enabled and app.enabled and app_region.enabled`.as('enabled'),
      'warm_pool.paused', 'warm_pool.paused_at', 'warm_pool.max_age_seconds', 'warm_pool.recycle_before', 'warm_pool.last_pass_at', 'warm_pool.last_decision',
      'warm_pool.last_desired', 'warm_pool.last_started', 'warm_pool.last_stopped', 'warm_pool.last_reason',
      maxAge.as('max_age'),
      eb.fn.count<string>('container.id').filterWhere((w) => w.and([w('container.state', '=', 'available'), w('container.user_id', 'is', null)])).as('available'),
      eb.fn.count<string>('container.id').filterWhere((w) => w.and([
        w('container.state', '=', 'available'), w('container.user_id', 'is', null),
        w.or([
          w.and([w(maxAge, '>', 0), w('container.created_at', '<', sql<Date>`${now}::timestamptz - make_interval(secs => ${maxAge})`)]),
          w('container.created_at', '<', w.ref('warm_pool.recycle_before'))
        ])
      ])).as('expired'),
      eb.fn.count<string>('container.id').filterWhere((w) => w.and([w('container.state', 'in', ['creating', 'starting']), w('container.user_id', 'is', null)])).as('starting'),
      eb.fn.count<string>('container.id').filterWhere('container.state', '=', 'in_use').as('in_use'),
      eb.fn.count<string>('container.id').filterWhere('container.state', '=', 'failed').as('failing')
    ])
    .$if(options.app !== undefined, (q) => q.where('app_region.app_id', '=', options.app!))
    .$if(options.region !== undefined, (q) => q.where('app_region.region_code', '=', options.region!))
    .$if(!!options.page?.after, (q) => q.where((eb) => eb(eb.refTuple('app_region.app_id', 'app_region.region_code'), '>', eb.tuple(options.page!.after!.app, options.page!.after!.region))))
    .groupBy(['app_region.app_id', 'app_region.region_code', 'region.code', 'app.id', 'warm_pool.app_id', 'warm_pool.region_code'])
    .orderBy('app_region.app_id').orderBy('app_region.region_code')
    .$if(options.page !== undefined, (q) => q.limit(options.page!.limit))
    .execute()
  const schedules = await schedulesOf(db, rows.map((r) => ({ app: r.app_id, region: r.region_code })))
  return rows.map((r) => {
    const schedule = scheduleInForce(schedules.get(`${r.app_id}/${r.region_code}`) ?? [], now)
    return {
      app: r.app_id,
      region: r.region_code,
      enabled: r.enabled,
      target: r.warm_pool_target,
      desired: schedule ? schedule.desired : r.warm_pool_target,
      schedule,
      available: Number(r.available),
      expired: Number(r.expired),
      starting: Number(r.starting),
      inUse: Number(r.in_use),
      failing: Number(r.failing),
      paused: r.paused ?? false,
      pausedAt: r.paused_at,
      maxAgeSeconds: r.max_age_seconds,
      effectiveMaxAgeSeconds: Number(r.max_age),
      recycleBefore: r.recycle_before,
      lastPass: r.last_pass_at && r.last_decision
        ? { at: r.last_pass_at, decision: r.last_decision, desired: r.last_desired ?? 0, started: r.last_started ?? 0, stopped: r.last_stopped ?? 0, reason: r.last_reason ?? '' }
        : null
    }
  })
}

/** The schedules of the given pools, keyed `app/region`, oldest first. */
async function schedulesOf (db: Db, pools: Array<{ app: string, region: string }>) {
  const out = new Map<string, WarmPoolSchedule[]>()
  // No pools: `in ()` is not SQL.
  if (pools.length === 0) return out
  const rows = await db.selectFrom('warm_pool_schedule').selectAll()
    .where('app_id', 'in', [...new Set(pools.map((p) => p.app))])
    .orderBy('created_at').orderBy('id').execute()
  for (const row of rows) {
    const key = `${row.app_id}/${row.region_code}`
    out.set(key, [...(out.get(key) ?? []), row])
  }
  return out
}

const poolKey = /^[a-z0-9][a-z0-9-]{0,39}$/

/** GET /v1/admin/warm-pools: one page of pools, by app then region. */
export async function listWarmPools (db: Kysely<DB>, options: Omit<PoolReadOptions, 'page'> & { limit: number, cursor?: string | undefined }) {
  const after = options.cursor
    ? decodeCursor(options.cursor, (parts) => parts.length === 2 && poolKey.test(parts[0]!) && /^[a-z0-9-]{1,32}$/.test(parts[1]!) ? { app: parts[0]!, region: parts[1]! } : undefined)
    : null
  const rows = await poolStatuses(db, { ...options, page: { limit: options.limit + 1, after } })
  return pageOf(rows, options.limit, (p) => [p.app, p.region])
}

/** One pool, or PoolNotFound. */
export async function getWarmPool (db: Db, app: string, region: string, options: Omit<PoolReadOptions, 'page' | 'app' | 'region'>) {
  const [pool] = await poolStatuses(db, { ...options, app, region })
  if (!pool) throw new PoolNotFound(app, region)
  return pool
}

async function lockOffer (trx: Transaction<DB>, app: string, region: string) {
  const offer = await trx.selectFrom('app_region').select('warm_pool_target').where('app_id', '=', app).where('region_code', '=', region)
    // Not FOR UPDATE: a container's insert (its foreign key) must not wait on it, or a pause waiting for
    // the claims in flight (the pool's advisory lock) would wait on a batch that waits on it.
    .forNoKeyUpdate().executeTakeFirst()
  if (!offer) throw new PoolNotFound(app, region)
  return offer
}

type ReadSettings = Omit<PoolReadOptions, 'page' | 'app' | 'region'>

/** Sets the base target the reconciliation pass keeps when no schedule is in force (audited). */
export async function setWarmPoolTarget (db: Kysely<DB>, actorId: string, app: string, region: string, target: number, read: ReadSettings) {
  await db.transaction().execute(async (trx) => {
    const before = await lockOffer(trx, app, region)
    await trx.updateTable('app_region').set({ warm_pool_target: target }).where('app_id', '=', app).where('region_code', '=', region).execute()
    await recordAudit(trx, { action: 'warm_pool.target_set', actorId, target: { type: 'warm_pool', id: `${app}/${region}` }, details: { from: before.warm_pool_target, to: target } })
  })
  return getWarmPool(db, app, region, read)
}

/** The key of the pool's advisory lock: fractal_assign_container takes it shared before it claims. */
const poolLock = (app: string, region: string) => sql`select pg_advisory_xact_lock(hashtextextended(${`warm_pool:${app}/${region}`}, 0))`

/**
 * Pauses or resumes a pool, or sets its maximum age (null: the default), each change audited. A pause waits
 * for the claims in flight (the pool's advisory lock): when it answers, no claim takes from the pool.
 */
export async function updateWarmPool (db: Kysely<DB>, actorId: string, app: string, region: string, changes: { paused?: boolean | undefined, maxAgeSeconds?: number | null | undefined }, read: ReadSettings) {
  await db.transaction().execute(async (trx) => {
    await lockOffer(trx, app, region)
    if (changes.paused !== undefined) await poolLock(app, region).execute(trx)
    const before = await trx.selectFrom('warm_pool').select(['paused', 'max_age_seconds']).where('app_id', '=', app).where('region_code', '=', region).executeTakeFirst()
    const paused = changes.paused ?? before?.paused ?? false
    const maxAge = changes.maxAgeSeconds !== undefined ? changes.maxAgeSeconds : before?.max_age_seconds ?? null
    const pausedAt = changes.paused === undefined || changes.paused === (before?.paused ?? false) ? undefined : (changes.paused ? read.now : null)
    await trx.insertInto('warm_pool')
      .values({ app_id: app, region_code: region, paused, paused_at: pausedAt ?? null, max_age_seconds: maxAge })
      .onConflict((oc) => oc.columns(['app_id', 'region_code']).doUpdateSet({
        paused, max_age_seconds: maxAge, updated_at: sql`now()`, ...(pausedAt !== undefined ? { paused_at: pausedAt } : {})
      }))
      .execute()
    const target = { type: 'warm_pool', id: `${app}/${region}` }
    if (changes.paused !== undefined && changes.paused !== (before?.paused ?? false)) {
      await recordAudit(trx, { action: changes.paused ? 'warm_pool.paused' : 'warm_pool.resumed', actorId, target })
    }
    if (changes.maxAgeSeconds !== undefined && changes.maxAgeSeconds !== (before?.max_age_seconds ?? null)) {
      await recordAudit(trx, { action: 'warm_pool.max_age_set', actorId, target, details: { from: before?.max_age_seconds ?? null, to: changes.maxAgeSeconds } })
    }
  })
  return getWarmPool(db, app, region, read)
}

/**
 * A forced recycle: every warm container of the pool made before now (the app's clock) is replaced by the
 * reconciliation pass as if past its maximum age: replacements first, the old ones stopped once those are
 * ready; a container in use is never stopped. A paused pool waits until resumed. Audited, with how many
 * ready containers it marks.
 */
export async function recycleWarmPool (db: Kysely<DB>, actorId: string, app: string, region: string, read: ReadSettings) {
  return await db.transaction().execute(async (trx) => {
    await lockOffer(trx, app, region)
    await trx.insertInto('warm_pool')
      .values({ app_id: app, region_code: region, recycle_before: read.now })
      .onConflict((oc) => oc.columns(['app_id', 'region_code']).doUpdateSet({ recycle_before: read.now, updated_at: sql`now()` }))
      .execute()
    const pool = await getWarmPool(trx, app, region, read)
    await recordAudit(trx, { action: 'warm_pool.recycled', actorId, target: { type: 'warm_pool', id: `${app}/${region}` }, details: { before: read.now.toISOString(), replacing: pool.expired } })
    return pool
  })
}

// ---- schedules ------------------------------------------------------------------------------------------

export interface ScheduleInput { days: Weekday[], start: string, end: string, timeZone: string, desired: number, name?: string | undefined }

async function offerExists (db: Db, app: string, region: string) {
  const row = await db.selectFrom('app_region').select('app_id').where('app_id', '=', app).where('region_code', '=', region).executeTakeFirst()
  if (!row) throw new PoolNotFound(app, region)
}

export async function listWarmPoolSchedules (db: Kysely<DB>, app: string, region: string) {
  await offerExists(db, app, region)
  return db.selectFrom('warm_pool_schedule').selectAll().where('app_id', '=', app).where('region_code', '=', region)
    .orderBy('created_at').orderBy('id').execute()
}

/**
 * Adds a schedule to a pool (audited). Refused (422) when its time zone is unknown or differs from the pool's
 * other schedules (one wall clock per pool keeps overlap exact across daylight-saving changes), or when it
 * overlaps another: the problem names that one.
 */
export async function createWarmPoolSchedule (db: Kysely<DB>, actorId: string, app: string, region: string, input: ScheduleInput) {
  const zone = canonicalTimeZone(input.timeZone)
  if (!zone) throw new UnknownTimeZone(input.timeZone)
  const window: Window = { days: [...new Set(input.days)].sort((a, b) => weekdays.indexOf(a) - weekdays.indexOf(b)), start_minute: minutesOf(input.start), end_minute: minutesOf(input.end) }
  return db.transaction().execute(async (trx) => {
    // Locked: two schedules added at once cannot both miss each other's overlap.
    await lockOffer(trx, app, region)
    const others = await trx.selectFrom('warm_pool_schedule').selectAll().where('app_id', '=', app).where('region_code', '=', region).orderBy('created_at').execute()
    if (others.length >= maxSchedules) throw new TooManySchedules(maxSchedules)
    const otherZone = others.find((o) => o.time_zone !== zone)
    if (otherZone) throw new ScheduleTimeZoneMismatch(otherZone)
    const clash = others.find((o) => overlaps(o, window))
    if (clash) throw new ScheduleOverlap(clash)
    const row = await trx.insertInto('warm_pool_schedule').values({
      app_id: app, region_code: region, ...window, time_zone: zone, desired: input.desired, name: input.name ?? null, created_by: actorId
    }).returningAll().executeTakeFirstOrThrow()
    await recordAudit(trx, {
      action: 'warm_pool.schedule_created', actorId, target: { type: 'warm_pool', id: `${app}/${region}` }, details: { scheduleId: row.id, schedule: describe(row) }
    })
    return row
  })
}

export async function deleteWarmPoolSchedule (db: Kysely<DB>, actorId: string, app: string, region: string, id: string) {
  await offerExists(db, app, region)
  await db.transaction().execute(async (trx) => {
    const row = await trx.deleteFrom('warm_pool_schedule').where('id', '=', id).where('app_id', '=', app).where('region_code', '=', region).returningAll().executeTakeFirst()
    if (!row) throw new ScheduleNotFound(id, app, region)
    await recordAudit(trx, {
      action: 'warm_pool.schedule_deleted', actorId, target: { type: 'warm_pool', id: `${app}/${region}` }, details: { scheduleId: row.id, schedule: describe(row) }
    })
  })
}

// ---- the reconciliation pass's record -------------------------------------------------------------------

export interface PassOutcome { decision: WarmPoolDecision, desired: number, started: number, stopped: number, reason: string }

/** What the pass decided for a pool, kept on its row (made on first use). */
export function recordPass (db: Db, app: string, region: string, at: Date, outcome: PassOutcome) {
  const values = {
    last_pass_at: at, last_decision: outcome.decision, last_desired: outcome.desired, last_started: outcome.started, last_stopped: outcome.stopped, last_reason: outcome.reason.slice(0, 500)
  }
  return db.insertInto('warm_pool').values({ app_id: app, region_code: region, ...values })
    .onConflict((oc) => oc.columns(['app_id', 'region_code']).doUpdateSet(values))
    .execute()
}
