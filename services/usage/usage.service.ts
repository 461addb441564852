import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { decodeCursor, encodeCursor } from '../pagination.js'
import { BadUsagePeriod } from './usage.errors.js'
import * as repo from './usage.repository.js'
import type { GroupBy, Range } from './usage.repository.js'
import type { UsageStore } from './usage.store.js'

export type { GroupBy, Range } from './usage.repository.js'
export { usageInRange } from './usage.repository.js'

const day = 86_400_000

/** Seconds in hours, to two decimals (the partner usage and the reports say the same). */
export const hours = (seconds: number) => Math.round((seconds / 3600) * 100) / 100

// A key is '' (no plan, no app) or what the API shows: ids, codes, uuids; never a `|` (the cursor's separator).
const afterKey = (cursor: string) => decodeCursor(cursor, (parts) => parts.length === 1 && parts[0]!.length <= 300 ? parts[0] : undefined)

export interface UsageQuery { from: string, to: string, groupBy: GroupBy, limit: number, cursor?: string | undefined }

/**
 * Container hours in [from, to) by user, app, region or plan: one page of groups ordered by key, and the
 * totals over all of them. Periods are up to 366 days.
 */
export async function usageReport (db: Kysely<DB>, query: UsageQuery) {
  const range = { from: new Date(query.from), to: new Date(query.to) }
  // A date-time the format accepts but Date cannot place (a leap second, 23:59:60) is refused, not sent to SQL.
  for (const field of ['from', 'to'] as const) {
    if (Number.isNaN(range[field].getTime())) throw new BadUsagePeriod(field, 'is not a date-time this server can read')
  }
  if (range.to.getTime() <= range.from.getTime()) throw new BadUsagePeriod('to', 'must be after from')
  if (range.to.getTime() - range.from.getTime() > 366 * day) throw new BadUsagePeriod('to', 'must be at most 366 days after from')
  const rows = await repo.usageGroups(db, range, query.groupBy, { limit: query.limit + 1, after: query.cursor ? afterKey(query.cursor) : null })
  const totals = rows[0]!
  const groups = rows.flatMap((r) => r.key === null
    ? []
    : [{ key: r.key === '' ? null : r.key, label: r.label, users: Number(r.users), containers: Number(r.containers), seconds: Number(r.seconds), hours: hours(Number(r.seconds)) }])
  const items = groups.slice(0, query.limit)
  const seconds = Number(totals.total_seconds)
  return {
    ...range,
    groupBy: query.groupBy,
    totals: { users: Number(totals.total_users), containers: Number(totals.total_containers), seconds, hours: hours(seconds) },
    items,
    nextCursor: groups.length > query.limit ? encodeCursor([items.at(-1)!.key ?? '']) : null
  }
}

/** A CSV field: quoted when it holds a comma, quote or line break; a leading = + - @ is neutralised (spreadsheets run it). */
function csvField (value: string | number | null): string {
  if (value === null) return ''
  let text = String(value)
  if (typeof value === 'string' && /^[=+\-@\t\r]/.test(text)) text = `'${text}`
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text
}

export function csvOf (header: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number | null>>): string {
  return [header, ...rows].map((row) => row.map(csvField).join(',')).join('\r\n') + '\r\n'
}

export function usageReportCsv (report: Awaited<ReturnType<typeof usageReport>>): string {
  return csvOf(['key', 'label', 'users', 'containers', 'seconds', 'hours'],
    report.items.map((i) => [i.key, i.label, i.users, i.containers, i.seconds, i.hours]))
}

/** The UTC day before the one `now` falls in: [its midnight, the next), and its name (YYYY-MM-DD). */
export function previousDay (now: number): Range & { date: string } {
  const to = new Date(Math.floor(now / day) * day)
  const from = new Date(to.getTime() - day)
  return { from, to, date: from.toISOString().slice(0, 10) }
}

export const dailyReportKey = (date: string) => `usage/daily/${date}.csv`

/**
 * Writes the previous UTC day's usage (one row per user, app, region and plan) to the store, once: a day whose
 * file exists is left alone, so a second pass (another worker, a retry, a restart) writes nothing. The file's
 * content depends only on the day's records, so a pass that raced another writes the same bytes.
 */
export async function writeDailyReport (db: Kysely<DB>, deps: { store: UsageStore, now: () => number }) {
  const { from, to, date } = previousDay(deps.now())
  const key = dailyReportKey(date)
  if (await deps.store.exists(key)) return { written: 0 }
  const rows = await repo.usageDetail(db, { from, to })
  const body = csvOf(['date', 'userId', 'email', 'app', 'region', 'plan', 'containers', 'seconds', 'hours'],
    rows.map((r) => [date, r.user_id, r.email, r.app_id, r.region_code, r.plan_id, Number(r.containers), Number(r.seconds), hours(Number(r.seconds))]))
  await deps.store.put(key, Buffer.from(body), 'text/csv; charset=utf-8')
  return { written: 1 }
}
