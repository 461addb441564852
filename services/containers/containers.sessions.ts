// Session limits (issue 22, docs/sessions.md): a maximum duration, a disconnect timeout (no client connected)
// and an idle timeout (a client connected, no input), set per plan, overridden per app, with configured
// defaults. The worker's pass (enforceSessionLimits) warns a session's client ahead of its end, then ends it
// through the usual stop; the user may extend the maximum duration within the plan's allowance.
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Container, DB, SessionEndingReason, SessionLimits } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import type { Clock } from '../clock.js'
import { defineError, fieldErrors } from '../errors.js'
import { ContainerNotFound } from './containers.errors.js'
import { queueStop } from './containers.lifecycle.js'
import * as repo from './containers.repository.js'
import type { ContainerDeps } from './containers.service.js'

/** Resolved limits in seconds: null, no such limit. */
export interface Limits {
  maxSessionSeconds: number | null
  disconnectTimeoutSeconds: number | null
  idleTimeoutSeconds: number | null
  maxExtensionSeconds: number
}

/** The configured defaults (0: no limit) and how far ahead a client is warned. */
export interface SessionSettings {
  defaults: { maxSessionSeconds: number, disconnectTimeoutSeconds: number, idleTimeoutSeconds: number, maxExtensionSeconds: number }
  warningSeconds: number
}

export const NoSession = defineError('conflict', 'Conflict', (id: string, state: string) => `Container ${id} holds no session to extend (it is ${state}).`)
export const ExtensionNotAllowed = defineError('unprocessable', 'Extension not allowed',
  (latest: Date | null) => latest ? `Your plan lets this session last until ${latest.toISOString()} at the latest.` : 'Your plan does not allow extending a session.',
  (latest: Date | null) => fieldErrors('/body/until', latest ? 'is past the plan\'s limit' : 'cannot be extended on this plan'))

const positive = (n: number | null | undefined) => n === null || n === undefined || n <= 0 ? null : n

/** The defaults, then the plan's values, then the app's overrides (a key present, even null, replaces). */
export function resolveLimits (defaults: SessionSettings['defaults'], plan: SessionLimits | null, app: SessionLimits | null): Limits {
  const pick = (key: keyof SessionLimits): number | null => {
    if (app && key in app) return app[key] ?? null
    if (plan && key in plan) return plan[key] ?? null
    return defaults[key]
  }
  return {
    maxSessionSeconds: positive(pick('maxSessionSeconds')),
    disconnectTimeoutSeconds: positive(pick('disconnectTimeoutSeconds')),
    idleTimeoutSeconds: positive(pick('idleTimeoutSeconds')),
    maxExtensionSeconds: positive(pick('maxExtensionSeconds')) ?? 0
  }
}

const sessionStart = (c: Container) => (c.assigned_at ?? c.running_at ?? c.created_at).getTime()

/** Where the maximum duration ends: the stored end (extensions included), else the start plus the limit. */
export function maxEndOf (c: Container, limits: Limits): number | null {
  if (c.max_ends_at) return c.max_ends_at.getTime()
  return limits.maxSessionSeconds === null ? null : sessionStart(c) + limits.maxSessionSeconds * 1000
}

/**
 * The first limit the session meets if nothing changes, from what the container's pings last reported: the
 * maximum duration; with no client connected, the disconnect timeout from when the client left (or the
 * session began); with one connected, the idle timeout from its last input (never, when the container does
 * not report input).
 */
export function deadlineOf (c: Container, limits: Limits): { at: number, reason: SessionEndingReason } | null {
  const candidates: Array<{ at: number, reason: SessionEndingReason }> = []
  const maxEnd = maxEndOf(c, limits)
  if (maxEnd !== null) candidates.push({ at: maxEnd, reason: 'max_duration' })
  const changed = c.client_changed_at?.getTime() ?? sessionStart(c)
  if (!c.client_connected && limits.disconnectTimeoutSeconds !== null) {
    candidates.push({ at: Math.max(changed, sessionStart(c)) + limits.disconnectTimeoutSeconds * 1000, reason: 'disconnected' })
  }
  if (c.client_connected && limits.idleTimeoutSeconds !== null && c.last_input_at) {
    candidates.push({ at: Math.max(c.last_input_at.getTime(), changed) + limits.idleTimeoutSeconds * 1000, reason: 'idle' })
  }
  return candidates.reduce<{ at: number, reason: SessionEndingReason } | null>((first, c) => first === null || c.at < first.at ? c : first, null)
}

/** Live sessions (held, in use, not ended by a limit) with the plan's and the app's limits: a page of 500 after `after`. */
function sessionsWithLimits (db: Kysely<DB>, after: string | null) {
  let query = db.selectFrom('container')
    .innerJoin('app', 'app.id', 'container.app_id')
    .leftJoin('subscription', 'subscription.user_id', 'container.user_id')
    // A plan counts while its subscription does (trialing, active, past due in its grace); else the defaults.
    .leftJoin('plan', (j) => j.onRef('plan.id', '=', 'subscription.plan_id').on('subscription.status', 'in', ['active', 'trialing', 'past_due']))
    .selectAll('container')
    .select(['plan.session_limits as plan_limits', 'app.session_limits as app_limits'])
    .where('container.state', '=', 'in_use').where('container.user_id', 'is not', null).where('container.session_ended_at', 'is', null)
  if (after) query = query.where('container.id', '>', after)
  return query.orderBy('container.id').limit(pageSize)
}

const pageSize = 500
type SessionRow = Container & { plan_limits: SessionLimits | null, app_limits: SessionLimits | null }
const toContainer = ({ plan_limits: _p, app_limits: _a, ...c }: SessionRow): Container => c

/** The limits of one container's session (its user's plan, its app, the defaults). */
export async function limitsOf (db: Kysely<DB>, settings: SessionSettings, container: Container): Promise<Limits> {
  const row = await db.selectFrom('app')
    .leftJoin('subscription', (j) => j.on('subscription.user_id', '=', container.user_id ?? '00000000-0000-0000-0000-000000000000'))
    .leftJoin('plan', (j) => j.onRef('plan.id', '=', 'subscription.plan_id').on('subscription.status', 'in', ['active', 'trialing', 'past_due']))
    .select(['plan.session_limits as plan_limits', 'app.session_limits as app_limits'])
    .where('app.id', '=', container.app_id).executeTakeFirst()
  return resolveLimits(settings.defaults, row?.plan_limits ?? null, row?.app_limits ?? null)
}

export interface EnforceDeps extends Pick<ContainerDeps, 'queue'>, SessionSettings {
  clock: Clock
}

/**
 * One pass of the worker's schedule: each live session whose deadline has come is ended (container_event
 * `session_ended`, audited, usage counted up to the deadline, the stop job queued); one within
 * `warningSeconds` of it is warned once per deadline (`ends_at`/`ending_reason`, a `session_warning`
 * event); a warning whose danger has passed (input came, a client connected) is withdrawn. Every write is
 * conditional on the row the pass read: a ping or an extension landing meanwhile wins, and the next pass
 * decides again with it.
 */
export async function enforceSessionLimits (db: Kysely<DB>, deps: EnforceDeps) {
  const now = deps.clock.now()
  const counts = { sessionsWarned: 0, sessionsEnded: 0, warningsWithdrawn: 0 }
  let after: string | null = null
  while (true) {
    const rows = await sessionsWithLimits(db, after).execute() as SessionRow[]
    await enforcePage(db, deps, now, rows, counts)
    if (rows.length < pageSize) return counts
    after = rows.at(-1)!.id
  }
}

async function enforcePage (db: Kysely<DB>, deps: EnforceDeps, now: number, rows: SessionRow[], counts: Record<'sessionsWarned' | 'sessionsEnded' | 'warningsWithdrawn', number>) {
  for (const row of rows) {
    const container = toContainer(row)
    const limits = resolveLimits(deps.defaults, row.plan_limits, row.app_limits)
    const deadline = deadlineOf(container, limits)
    if (deadline && now >= deadline.at) {
      const stopped = await endSession(db, container, deadline)
      if (stopped) {
        counts.sessionsEnded++
        await queueStop(db, deps, stopped)
      }
      continue
    }
    if (deadline && deadline.at - now <= deps.warningSeconds * 1000) {
      // Once per deadline: a deadline that moved by less than a second (the idle seconds a ping rounds) is the same one.
      const same = container.ending_reason === deadline.reason && container.ends_at !== null && Math.abs(container.ends_at.getTime() - deadline.at) < 1000
      if (!same && await warn(db, container, deadline)) counts.sessionsWarned++
      continue
    }
    if (container.ends_at !== null && await withdraw(db, container)) counts.warningsWithdrawn++
  }
  // The maximum duration is fixed when the session's first pass sees it (the plan may change later).
  const unset = rows.filter((r) => r.max_ends_at === null)
  for (const row of unset) {
    const end = maxEndOf(toContainer(row), resolveLimits(deps.defaults, row.plan_limits, row.app_limits))
    if (end !== null) await db.updateTable('container').set({ max_ends_at: new Date(end) }).where('id', '=', row.id).where('max_ends_at', 'is', null).where('state', '=', 'in_use').execute()
  }
}

/** The row has not changed since the pass read it (no ping, extension or stop in between). */
function unchanged (c: Container) {
  return sql<boolean>`state = 'in_use' and session_ended_at is null
    and client_connected = ${c.client_connected}
    and last_input_at is not distinct from ${c.last_input_at}
    and client_changed_at is not distinct from ${c.client_changed_at}
    and max_ends_at is not distinct from ${c.max_ends_at}`
}

async function endSession (db: Kysely<DB>, c: Container, deadline: { at: number, reason: SessionEndingReason }) {
  const at = new Date(deadline.at)
  return db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('container')
      .set({ state: 'stopping', session_ended_at: at, ends_at: at, ending_reason: deadline.reason, updated_at: sql`now()` })
      .where('id', '=', c.id).where(unchanged(c)).returningAll().executeTakeFirst()
    if (!row) return null
    await trx.insertInto('container_event').values({ container_id: c.id, from_state: 'in_use', to_state: 'stopping', kind: 'session_ended', reason: deadline.reason, ends_at: at }).execute()
    // Its grants die with it (introspection also refuses them for a container that is not live).
    await trx.updateTable('container_grant').set({ revoked_at: at }).where('container_id', '=', c.id).where('revoked_at', 'is', null).execute()
    await recordAudit(trx, { action: 'container.session_ended', actorId: null, target: { type: 'container', id: c.id }, details: { reason: deadline.reason, endedAt: at.toISOString(), userId: c.user_id } })
    return row
  })
}

async function warn (db: Kysely<DB>, c: Container, deadline: { at: number, reason: SessionEndingReason }) {
  const at = new Date(deadline.at)
  return db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('container').set({ ends_at: at, ending_reason: deadline.reason })
      .where('id', '=', c.id).where(unchanged(c)).returning('id').executeTakeFirst()
    if (!row) return false
    await trx.insertInto('container_event').values({ container_id: c.id, from_state: 'in_use', to_state: 'in_use', kind: 'session_warning', reason: deadline.reason, ends_at: at }).execute()
    return true
  })
}

async function withdraw (db: Kysely<DB>, c: Container) {
  const row = await db.updateTable('container').set({ ends_at: null, ending_reason: null })
    .where('id', '=', c.id).where(unchanged(c)).returning('id').executeTakeFirst()
  return !!row
}

/**
 * The user moves the end of the maximum duration to `until`, within the plan's allowance (`maxExtensionSeconds`
 * past the plan's maximum, in all). Never shortens: an `until` at or before the current end changes nothing,
 * so the same request again answers the same. A pending `max_duration` warning is withdrawn.
 */
export async function extendSession (db: Kysely<DB>, settings: SessionSettings, userId: string, id: string, until: Date): Promise<Container> {
  const container = await repo.findContainer(db, id)
  if (!container || container.user_id !== userId) throw new ContainerNotFound(id)
  if (container.state !== 'in_use' || container.session_ended_at !== null) throw new NoSession(id, container.session_ended_at ? 'ended by a limit' : container.state)
  const limits = await limitsOf(db, settings, container)
  const current = maxEndOf(container, limits)
  if (current === null || until.getTime() <= current) return container
  if (limits.maxExtensionSeconds === 0 || limits.maxSessionSeconds === null) throw new ExtensionNotAllowed(null)
  const latest = sessionStart(container) + (limits.maxSessionSeconds + limits.maxExtensionSeconds) * 1000
  if (until.getTime() > latest) throw new ExtensionNotAllowed(new Date(latest))
  return db.transaction().execute(async (trx) => {
    // greatest(): two extensions at once keep the later end, whichever commits first.
    const row = await trx.updateTable('container')
      .set({
        max_ends_at: sql<Date>`greatest(coalesce(max_ends_at, ${new Date(current)}), ${until})`,
        ends_at: sql<Date | null>`case when ending_reason = 'max_duration' then null else ends_at end`,
        ending_reason: sql<SessionEndingReason | null>`case when ending_reason = 'max_duration' then null else ending_reason end`
      })
      .where('id', '=', id).where('state', '=', 'in_use').where('session_ended_at', 'is', null)
      .returningAll().executeTakeFirst()
    if (!row) throw new NoSession(id, 'ending')
    await trx.insertInto('container_event').values({ container_id: id, from_state: 'in_use', to_state: 'in_use', kind: 'session_extended', reason: 'max_duration', ends_at: row.max_ends_at }).execute()
    await recordAudit(trx, { action: 'container.session_extended', actorId: userId, target: { type: 'container', id }, details: { from: new Date(current).toISOString(), to: row.max_ends_at!.toISOString() } })
    return row
  })
}
