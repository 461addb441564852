import { sql, type Kysely } from 'kysely'
import type { DB } from '../../db/types.js'

/** Per app and region: the warm-pool target, and how many unheld containers are ready or on their way. */
export function warmPools (db: Kysely<DB>, filters: { app?: string, region?: string } = {}) {
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
