import type { Kysely } from 'kysely'
import { sql } from './kysely.js'
import type { DB } from './types.js'
import { readPlansFile, upsertPlans } from './plans.js'
import { apps, regions } from './seed-data.js'

export interface SeedOptions {
  /**
   * The warm-pool targets of new offers: as listed (96 containers in all), or `small`: one per app in the
   * first region, none elsewhere (the embedded default with the simulated cloud, issue 20).
   */
  warmPools?: 'full' | 'small'
}

/** Inserts or refreshes the catalog (regions, apps, where each app is offered). Safe to run again. */
export async function seedCatalog (db: Kysely<DB>, options: SeedOptions = {}): Promise<{ regions: number, apps: number }> {
  const target = (warm: number, region: string) => options.warmPools === 'small' ? (region === regions[0].code ? Math.min(warm, 1) : 0) : warm
  await db.transaction().execute(async (trx) => {
    await trx.insertInto('region')
      .values(regions.map((r, i) => ({ ...r, sort_order: i })))
      .onConflict((oc) => oc.column('code').doUpdateSet((eb) => ({
        name: eb.ref('excluded.name'), latitude: eb.ref('excluded.latitude'), longitude: eb.ref('excluded.longitude'), sort_order: eb.ref('excluded.sort_order')
      })))
      .execute()
    await trx.insertInto('app')
      .values(apps.map((a) => ({ id: a.id, name: a.name, description: a.description, category: a.category, icon_url: `https://cdn.fractal.co/icons/${a.id}.svg` })))
      .onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({
        name: eb.ref('excluded.name'), description: eb.ref('excluded.description'), category: eb.ref('excluded.category'), icon_url: eb.ref('excluded.icon_url'), updated_at: sql`now()`
      })))
      .execute()
    await trx.insertInto('app_region')
      .values(apps.flatMap((a) => a.regions.map((region) => ({
        app_id: a.id, region_code: region, task_definition: `fractal-${a.id}:1`, warm_pool_target: target(a.warm, region)
      }))))
      .onConflict((oc) => oc.columns(['app_id', 'region_code']).doNothing())
      .execute()
    // One ECS cluster per region until the fleet feature manages them.
    await trx.insertInto('cluster')
      .values(regions.map((r) => ({ region_code: r.code, name: `fractal-${r.code}-1`, capacity: 50, capacity_provider: `fractal-${r.code}-1-capacity` })))
      .onConflict((oc) => oc.column('name').doNothing())
      .execute()
  })
  await upsertPlans(db, await readPlansFile())
  return { regions: regions.length, apps: apps.length }
}

/** Seeds only an empty catalog: what `npm start` does on a fresh machine. */
export async function seedIfEmpty (db: Kysely<DB>, options: SeedOptions = {}): Promise<boolean> {
  const any = await db.selectFrom('region').select('code').limit(1).executeTakeFirst()
  if (any) return false
  await seedCatalog(db, options)
  return true
}
