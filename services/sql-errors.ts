import { AppNotInPlan, paymentRequired, PlanForbidsDpi, PlanForbidsRegion, PlanLimit } from './billing/billing.errors.js'
import { AlreadyRunning, AppNotOffered, IdempotencyMismatch, RegionDisabled, UnknownApp } from './containers/containers.errors.js'
import { DomainError } from './errors.js'

/** What a SQL function raised: its SQLSTATE, message and detail (`raise exception … using errcode, detail`). */
export interface Raised { code: string, message?: string | undefined, detail?: string | null | undefined }

/** What the caller asked, for the problem's words (the functions raise only what they alone know). */
export interface Asked { app?: string, region?: string | undefined, appUrl: string }

/**
 * The one SQLSTATE → problem table: every SQLSTATE our SQL functions (db/functions/*.sql) raise, and the domain
 * error (so the problem+json) each becomes, wherever it is called from (the assignment, the entitlement read).
 * test/db/functions.test.ts reads both sides: every `errcode = 'FR…'` of the SQL files is here, and every row
 * here is raised by a file.
 */
export const sqlErrors: Readonly<Record<string, (raised: Raised, asked: Asked) => Error>> = {
  FR001: () => new IdempotencyMismatch(),
  FR002: (_, asked) => new UnknownApp(asked.app ?? ''),
  FR003: (_, asked) => new AppNotOffered(asked.app ?? '', asked.region ?? 'any enabled region'),
  FR004: (raised, asked) => new RegionDisabled(raised.detail ?? asked.region ?? ''),
  // detail: when the maintenance window ends (epoch seconds); message: the window's own message.
  FR005: (raised) => new DomainError('maintenance', 'Down for maintenance', raised.message ?? 'Down for maintenance.', {
    retryAfter: Math.max(1, Math.min(3600, Math.ceil(Number(raised.detail) - Date.now() / 1000)))
  }),
  FR006: (raised, asked) => new AlreadyRunning(asked.app ?? '', raised.detail ?? ''),
  FR007: (raised) => new PlanLimit(Number(raised.detail)),
  FR008: (raised, asked) => paymentRequired(raised.detail ?? '', asked.appUrl),
  FR009: (raised, asked) => new PlanForbidsRegion(raised.detail ?? asked.region ?? ''),
  FR010: (raised) => new PlanForbidsDpi(Number(raised.detail)),
  // detail: the plans that include the app, comma-separated.
  FR011: (raised, asked) => new AppNotInPlan(asked.app ?? '', (raised.detail ?? '').split(',').filter(Boolean))
}

/** The problem a database error stands for when one of our functions raised it; any other error as it is. */
export function problemOf (err: unknown, asked: Asked): unknown {
  const code = (err as { code?: unknown } | null)?.code
  const make = typeof code === 'string' && Object.hasOwn(sqlErrors, code) ? sqlErrors[code] : undefined
  return make ? make(err as Raised, asked) : err
}
