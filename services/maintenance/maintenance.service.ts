import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import type { CacheInvalidator } from '../cache/cache.js'
import { DomainError, defineError } from '../errors.js'
import { recordAudit } from '../audit/audit.service.js'

export const RegionUnknown = defineError('not_found', 'Region not found', (code: string) => `Region ${code} does not exist.`)

function activeWindows (db: Kysely<DB>) {
  return db.selectFrom('maintenance').selectAll().where('ends_at', '>', sql<Date>`now()`).orderBy('scope').execute()
}

/** Throws `maintenance` (503, Retry-After) when the region or everything is in a maintenance window. */
export async function assertOpen (db: Kysely<DB>, region: string) {
  const window = await db.selectFrom('maintenance').selectAll()
    .where('scope', 'in', ['global', region]).where('ends_at', '>', sql<Date>`now()`)
    .orderBy('ends_at', 'desc').limit(1).executeTakeFirst()
  if (!window) return
  const retryAfter = Math.max(1, Math.min(3600, Math.ceil((window.ends_at.getTime() - Date.now()) / 1000)))
  throw new DomainError('maintenance', 'Down for maintenance', window.message, { retryAfter })
}

async function runningJobs (db: Kysely<DB>) {
  const row = await db.selectFrom('job').select((eb) => eb.fn.countAll<number>().as('n')).where('state', 'in', ['queued', 'running']).executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Starts (or extends) or ends a window; optionally waits for the jobs still running. */
export async function setMaintenance (
  db: Kysely<DB>, deps: { cache: CacheInvalidator }, ownerId: string,
  input: { enabled: boolean, region?: string, message?: string, minutes?: number, waitSeconds?: number }
) {
  const scope = input.region ?? 'global'
  if (input.region && !(await db.selectFrom('region').select('code').where('code', '=', input.region).executeTakeFirst())) throw new RegionUnknown(input.region)
  // The window and its audit row together: a refused audit row (a value PostgreSQL cannot store) starts nothing.
  await db.transaction().execute(async (trx) => {
    if (input.enabled) {
      const endsAt = new Date(Date.now() + (input.minutes ?? 60) * 60_000)
      const message = input.message ?? 'Down for maintenance. Try again later.'
      await trx.insertInto('maintenance').values({ scope, message, owner_id: ownerId, ends_at: endsAt })
        .onConflict((oc) => oc.column('scope').doUpdateSet({ message, owner_id: ownerId, ends_at: endsAt, starts_at: sql`now()` }))
        .execute()
    } else {
      await trx.deleteFrom('maintenance').where('scope', '=', scope).execute()
    }
    await recordAudit(trx, { action: input.enabled ? 'maintenance.started' : 'maintenance.ended', actorId: ownerId, target: { type: 'maintenance', id: scope }, details: { message: input.message ?? null, minutes: input.minutes ?? null } })
  })
  await deps.cache.invalidate(['status'])
  const deadline = Date.now() + (input.waitSeconds ?? 0) * 1000
  let running = await runningJobs(db)
  while (running > 0 && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 250))
    running = await runningJobs(db)
  }
  return { windows: await activeWindows(db), runningJobs: running }
}

/**
 * Per region: up, in maintenance, or disabled; overall ok, degraded (an enabled region is not up) or
 * maintenance. A disabled region is one we do not offer (a fresh install seeds sa-east-1 so): it shows, but
 * degrades nothing (issue 20).
 */
export async function getStatus (db: Kysely<DB>) {
  const [regions, windows] = await Promise.all([
    db.selectFrom('region').select(['code', 'enabled']).orderBy('sort_order').orderBy('code').execute(),
    activeWindows(db)
  ])
  const byScope = new Map(windows.map((w) => [w.scope, w]))
  const global = byScope.get('global')
  const items = regions.map((r) => {
    const window = global ?? byScope.get(r.code)
    return { code: r.code, status: window ? 'maintenance' as const : r.enabled ? 'up' as const : 'disabled' as const, message: window?.message ?? null }
  })
  const degraded = items.some((r, i) => regions[i]!.enabled && r.status !== 'up')
  const status = global ? 'maintenance' as const : degraded ? 'degraded' as const : 'ok' as const
  return { status, message: global?.message ?? null, regions: items }
}
