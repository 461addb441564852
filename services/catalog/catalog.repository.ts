import type { Expression, Kysely, SqlBool, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { AppUpdate, DB, NewApp, RegionUpdate } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

// The enabled regions an app is offered in (and enabled in), as one text[] column of the app row (no N+1).
const enabledRegionsOf = (appId: Expression<string>) => sql<string[]>`array(
  select ar.region_code from app_region ar join region r on r.code = ar.region_code
  where ar.app_id = ${appId} and r.enabled and ar.enabled order by r.sort_order, r.code)`

const appColumns = ['app.id', 'app.name', 'app.description', 'app.icon_url', 'app.category'] as const

// The plans that include an app (plan_app), as one text[] column of the app row; empty: every plan.
const plansOf = (appId: Expression<string>) => sql<string[]>`array(select pa.plan_id from plan_app pa where pa.app_id = ${appId} order by pa.plan_id)`

export function listRegions (db: Db) {
  return db.selectFrom('region').selectAll().orderBy('sort_order').orderBy('code').execute()
}

export function findRegion (db: Db, code: string) {
  return db.selectFrom('region').selectAll().where('code', '=', code).executeTakeFirst()
}

export function updateRegion (db: Db, code: string, changes: RegionUpdate) {
  return db.updateTable('region').set({ ...changes, updated_at: sql`now()` }).where('code', '=', code).returningAll().executeTakeFirst()
}

export function listApps (db: Db, page: { limit: number, afterId: string | null, region: string | null }) {
  return db.selectFrom('app')
    .select([...appColumns, (eb) => enabledRegionsOf(eb.ref('app.id')).as('regions'), (eb) => plansOf(eb.ref('app.id')).as('plans')])
    .where('app.enabled', '=', true)
    .$if(page.afterId !== null, (q) => q.where('app.id', '>', page.afterId!))
    .$if(page.region !== null, (q) => q.where((eb) => eb.exists(
      eb.selectFrom('app_region').select(sql`1`.as('one'))
        .whereRef('app_region.app_id', '=', 'app.id')
        .where('app_region.region_code', '=', page.region!)
        .where('app_region.enabled', '=', true)
    ) as Expression<SqlBool>))
    .orderBy('app.id')
    .limit(page.limit)
    .execute()
}

export function findApp (db: Db, id: string) {
  return db.selectFrom('app')
    .select([...appColumns, (eb) => enabledRegionsOf(eb.ref('app.id')).as('regions'), (eb) => plansOf(eb.ref('app.id')).as('plans')])
    .where('app.id', '=', id).where('app.enabled', '=', true)
    .executeTakeFirst()
}

export type AppWithRegions = NonNullable<Awaited<ReturnType<typeof findApp>>>

export interface AppRegionSetting { region: string, enabled: boolean, task_definition: string, warm_pool_target: number }

/** An app as operators see it, enabled or not: its plans and every region it has a task definition in. */
export function findAdminApp (db: Db, id: string) {
  return db.selectFrom('app')
    .selectAll('app')
    .select([
      (eb) => plansOf(eb.ref('app.id')).as('plans'),
      sql<AppRegionSetting[]>`coalesce((select json_agg(json_build_object('region', ar.region_code, 'enabled', ar.enabled,
        'task_definition', ar.task_definition, 'warm_pool_target', ar.warm_pool_target) order by r.sort_order, r.code)
        from app_region ar join region r on r.code = ar.region_code where ar.app_id = app.id), '[]'::json)`.as('regions')
    ])
    .where('app.id', '=', id)
    .executeTakeFirst()
}

export type AdminAppRow = NonNullable<Awaited<ReturnType<typeof findAdminApp>>>

/** Inserts the app; undefined when its id is taken. */
export function insertApp (db: Db, values: NewApp) {
  return db.insertInto('app').values(values).onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst()
}

export function updateApp (db: Db, id: string, changes: AppUpdate) {
  return db.updateTable('app').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).returning('id').executeTakeFirst()
}

/** The app row, locked for the change (its previous values go in the audit). */
export function lockApp (db: Db, id: string) {
  return db.selectFrom('app').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()
}

export async function planIdsOf (db: Db, appId: string): Promise<string[]> {
  return (await db.selectFrom('plan_app').select('plan_id').where('app_id', '=', appId).orderBy('plan_id').execute()).map((r) => r.plan_id)
}

/** The ids among `ids` that name no plan. */
export async function missingPlans (db: Db, ids: readonly string[]): Promise<string[]> {
  // No ids, nothing to look up.
  if (ids.length === 0) return []
  const found = new Set((await db.selectFrom('plan').select('id').where('id', 'in', ids).execute()).map((r) => r.id))
  return ids.filter((id) => !found.has(id))
}

export async function replacePlans (db: Db, appId: string, planIds: readonly string[]) {
  await db.deleteFrom('plan_app').where('app_id', '=', appId).execute()
  // An empty list leaves the app in no plan.
  if (planIds.length > 0) await db.insertInto('plan_app').values(planIds.map((planId) => ({ plan_id: planId, app_id: appId }))).execute()
}

export function findAppRegion (db: Db, appId: string, region: string) {
  return db.selectFrom('app_region').selectAll().where('app_id', '=', appId).where('region_code', '=', region).forUpdate().executeTakeFirst()
}

/** Sets where and what the app runs in a region; the warm-pool target of an existing setting is kept. */
export function upsertAppRegion (db: Db, values: { app_id: string, region_code: string, task_definition: string, enabled: boolean }) {
  return db.insertInto('app_region').values(values)
    .onConflict((oc) => oc.columns(['app_id', 'region_code']).doUpdateSet((eb) => ({
      task_definition: eb.ref('excluded.task_definition'), enabled: eb.ref('excluded.enabled')
    })))
    .execute()
}

export function touchApp (db: Db, id: string) {
  return db.updateTable('app').set({ updated_at: sql`now()` }).where('id', '=', id).execute()
}
