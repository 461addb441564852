import type { Kysely, RawBuilder, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

export interface Range { from: Date, to: Date }
export type GroupBy = 'user' | 'app' | 'region' | 'plan'

/**
 * The one definition of usage in a period, which every report reads (admin reports, the daily file, the
 * partner usage): each container's held time, counted when it stopped (`ended_at` in [from, to)), with its
 * user, app, region and the user's plan at the time. Containers are never deleted; a record whose container
 * row is gone keeps its time, with app and region null.
 */
export function usageInRange (db: Db, range: Range) {
  return db.selectFrom('usage_record')
    .leftJoin('container', 'container.id', 'usage_record.container_id')
    .select([
      'usage_record.container_id', 'usage_record.user_id', 'usage_record.seconds', 'usage_record.ended_at', 'usage_record.plan_id',
      'container.app_id', 'container.region_code'
    ])
    .where('usage_record.ended_at', '>=', range.from).where('usage_record.ended_at', '<', range.to)
}

// Constant fragments (no text from the request reaches the query): groupBy only picks one.
const keyOf: Record<GroupBy, RawBuilder<unknown>> = { user: sql`u.user_id`, app: sql`u.app_id`, region: sql`u.region_code`, plan: sql`u.plan_id` }
// What a group's key is shown with: the user's address, the app's, region's or plan's name.
const labelOf: Record<GroupBy, RawBuilder<unknown>> = {
  user: sql`(select email from account where id::text = g.key)`,
  app: sql`(select name from app where id = g.key)`,
  region: sql`(select name from region where code = g.key)`,
  plan: sql`(select name from plan where id = g.key)`
}

/**
 * One page of groups, ordered by key (a missing key, '' here, first), and the totals over every group in
 * one query: always one row for the totals, with the group columns null when the page is empty.
 */
export async function usageGroups (db: Db, range: Range, groupBy: GroupBy, page: { limit: number, after: string | null }) {
  const key = sql`coalesce(${keyOf[groupBy]}::text, '')`
  const { rows } = await sql<{
    total_users: string,
    total_containers: string,
    total_seconds: string,
    key: string | null,
    label: string | null,
    users: string | null,
    containers: string | null,
    seconds: string | null
  }>`
    with u as (${usageInRange(db, range)}),
    groups as (
      select ${key} as key, count(distinct u.user_id) as users, count(*) as containers, sum(u.seconds)::bigint as seconds
      from u group by 1
    ),
    totals as (
      select count(distinct u.user_id) as users, count(*) as containers, coalesce(sum(u.seconds), 0)::bigint as seconds from u
    ),
    page as (
      select g.key, ${labelOf[groupBy]} as label, g.users, g.containers, g.seconds from groups g
      where ${page.after === null ? sql`true` : sql`g.key > ${page.after}`}
      order by g.key limit ${page.limit}
    )
    select t.users as total_users, t.containers as total_containers, t.seconds as total_seconds,
      p.key, p.label, p.users, p.containers, p.seconds
    from totals t left join page p on true
    order by p.key`.execute(db)
  return rows
}

/** A period's usage at the finest grain (user, app, region, plan), for the daily file: one row per combination. */
export async function usageDetail (db: Db, range: Range) {
  const { rows } = await sql<{
    user_id: string, email: string | null, app_id: string | null, region_code: string | null, plan_id: string | null, containers: string, seconds: string
  }>`
    with u as (${usageInRange(db, range)})
    select u.user_id, a.email, u.app_id, u.region_code, u.plan_id, count(*) as containers, sum(u.seconds)::bigint as seconds
    from u left join account a on a.id = u.user_id
    group by u.user_id, a.email, u.app_id, u.region_code, u.plan_id
    order by u.user_id, u.app_id nulls first, u.region_code nulls first, u.plan_id nulls first`.execute(db)
  return rows
}
