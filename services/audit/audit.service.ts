import { AsyncLocalStorage } from 'node:async_hooks'
import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { decodeCursor, pageOf } from '../pagination.js'

/**
 * The audit trail: every admin action, role change, key creation, sign-in failure, maintenance change...
 * one row each in `audit_event`, which is append-only at the database level (a trigger refuses UPDATE and
 * DELETE, whoever asks). Who asked from where comes from the request being served (`auditContext`, set for
 * every request by plugins/audit.ts), so services only say what happened.
 */
export interface AuditEvent {
  action: string
  actorId: string | null
  target?: { type: string, id: string } | undefined
  details?: Record<string, unknown> | undefined
}

/** Who sent the request: its client address (honouring TRUST_PROXY) and user agent. */
export interface RequestContext { ip: string | null, userAgent: string | null }

/**
 * The request being served (set for every request by plugins/audit.ts); absent in jobs and schedules. A job
 * that acts for a request carries its context in its payload and runs inside it (`auditContext.run(ctx, …)`).
 */
export const auditContext = new AsyncLocalStorage<RequestContext>()

const nowhere: RequestContext = Object.freeze({ ip: null, userAgent: null })

/** The context of the request being served, or nulls outside one. */
export function requestContext (): RequestContext {
  return auditContext.getStore() ?? nowhere
}

export function recordAudit (db: Kysely<DB>, event: AuditEvent) {
  const from = auditContext.getStore()
  return db.insertInto('audit_event').values({
    action: event.action,
    actor_id: event.actorId,
    target_type: event.target?.type ?? null,
    target_id: event.target?.id ?? null,
    ip: from?.ip ?? null,
    user_agent: from?.userAgent ?? null,
    details: JSON.stringify(event.details ?? {})
  }).execute()
}

export interface AuditFilters {
  action?: string | undefined
  actor?: string | undefined
  targetType?: string | undefined
  targetId?: string | undefined
  ip?: string | undefined
  since?: string | undefined
  until?: string | undefined
}

/** Newest first, keyset-paginated on the identity column (`at` follows it). */
export async function listAudit (db: Kysely<DB>, filters: AuditFilters, page: { limit: number, cursor?: string | undefined }) {
  // The cursor is the last id of the previous page (ids only grow).
  const after = page.cursor ? decodeCursor(page.cursor, (parts) => parts.length === 1 && eventId.test(parts[0]!) ? parts[0] : undefined) : null
  const rows = await db.selectFrom('audit_event').selectAll()
    .$if(filters.action !== undefined, (q) => filters.action!.endsWith('.*')
      ? q.where('action', 'like', `${filters.action!.slice(0, -1).replace(/[%_\\]/g, '\\$&')}%`)
      : q.where('action', '=', filters.action!))
    .$if(filters.actor !== undefined, (q) => q.where('actor_id', '=', filters.actor!))
    .$if(filters.targetType !== undefined, (q) => q.where('target_type', '=', filters.targetType!))
    .$if(filters.targetId !== undefined, (q) => q.where('target_id', '=', filters.targetId!))
    .$if(filters.ip !== undefined, (q) => q.where('ip', '=', filters.ip!))
    .$if(filters.since !== undefined, (q) => q.where('at', '>=', new Date(filters.since!)))
    .$if(filters.until !== undefined, (q) => q.where('at', '<', new Date(filters.until!)))
    .$if(after !== null, (q) => q.where('id', '<', after!))
    .orderBy('id', 'desc')
    .limit(page.limit + 1)
    .execute()
  return pageOf(rows, page.limit, (row) => [String(row.id)])
}

const eventId = /^[1-9][0-9]{0,18}$/
