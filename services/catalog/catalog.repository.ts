import { sql, type Expression, type Kysely, type SqlBool, type Transaction } from 'kysely'
import type { DB, RegionUpdate } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

// The enabled regions an app is offered in, as one text[] column of the app row (no N+1).
const enabledRegionsOf = (appId: Expression<string>) => sql<string[]>`array(
  select ar.region_code from app_region ar join region r on r.code = ar.region_code
  where ar.app_id = ${appId} and r.enabled order by r.sort_order, r.code)`

const appColumns = ['app.id', 'app.name', 'app.description', 'app.icon_url', 'app.category'] as const

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
    .select([...appColumns, (eb) => enabledRegionsOf(eb.ref('app.id')).as('regions')])
    .$if(page.afterId !== null, (q) => q.where('app.id', '>', page.afterId!))
    .$if(page.region !== null, (q) => q.where((eb) => eb.exists(
      eb.selectFrom('app_region').select(sql`1`.as('one'))
        .whereRef('app_region.app_id', '=', 'app.id')
        .where('app_region.region_code', '=', page.region!)
    ) as Expression<SqlBool>))
    .orderBy('app.id')
    .limit(page.limit)
    .execute()
}

export function findApp (db: Db, id: string) {
  return db.selectFrom('app')
    .select([...appColumns, (eb) => enabledRegionsOf(eb.ref('app.id')).as('regions')])
    .where('app.id', '=', id)
    .executeTakeFirst()
}

export type AppWithRegions = NonNullable<Awaited<ReturnType<typeof findApp>>>
