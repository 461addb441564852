// The scaling schedule: per open region, the containers needed (live ones plus the warm pools' missing
// ones) against the capacity of its clusters. Too little: a new cluster (when the region has an AMI). An
// active cluster that is empty, old enough, and not needed for the capacity: deleted. Hosts scale in
// within a cluster only when empty: ECS managed scaling with termination protection decides that. Every
// decision is a fleet_decision row, shown by GET /v1/admin/fleet.
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import { warmPools } from '../containers/containers.warm-pools.js'
import { createCluster, deleteCluster, type ClusterDeps } from './clusters.service.js'

export interface ScalingSettings {
  instanceType: string
  /** A new cluster's Auto Scaling group: 0..maxSize hosts (managed scaling adds them as tasks need). */
  clusterMaxSize: number
  /** An empty cluster younger than this is kept (it may have just been made). */
  emptyGraceMs: number
}

const live = ['creating', 'starting', 'available', 'in_use', 'stopping'] as const

export async function scaleFleet (db: Kysely<DB>, deps: ClusterDeps, settings: ScalingSettings) {
  const closed = new Set((await db.selectFrom('maintenance').select('scope').where('ends_at', '>', sql<Date>`now()`).execute()).map((w) => w.scope))
  if (closed.has('global')) return { created: 0, deleted: 0 }
  const [regions, clusters, usage, pools] = await Promise.all([
    db.selectFrom('region').select(['code', 'current_ami']).where('enabled', '=', true).execute(),
    db.selectFrom('cluster').select(['id', 'region_code', 'status', 'capacity', 'created_at']).where('status', 'in', ['creating', 'active']).execute(),
    db.selectFrom('container').select(['cluster_id', 'region_code', (eb) => eb.fn.countAll<number>().as('n')])
      .where('state', 'in', live).groupBy(['cluster_id', 'region_code']).execute(),
    warmPools(db)
  ])
  let created = 0
  let deleted = 0
  for (const region of regions) {
    if (closed.has(region.code)) continue
    const inRegion = clusters.filter((c) => c.region_code === region.code)
    const liveContainers = usage.filter((u) => u.region_code === region.code).reduce((sum, u) => sum + Number(u.n), 0)
    const missingWarm = pools.filter((p) => p.region_code === region.code && p.enabled)
      .reduce((sum, p) => sum + Math.max(0, p.warm_pool_target - Number(p.ready) - Number(p.starting)), 0)
    const needed = liveContainers + missingWarm
    const capacity = inRegion.reduce((sum, c) => sum + c.capacity, 0)
    if (needed > capacity) {
      if (inRegion.some((c) => c.status === 'creating')) continue
      if (!region.current_ami) {
        await decide(db, region.code, 'cannot_create', `needs room for ${needed} containers, has ${capacity}, but the region has no current AMI`, null)
        continue
      }
      const { cluster } = await createCluster(db, deps, null, { region: region.code, instanceType: settings.instanceType, minSize: 0, maxSize: settings.clusterMaxSize })
      await decide(db, region.code, 'create_cluster', `needs room for ${needed} containers (${liveContainers} live, ${missingWarm} warm missing), has ${capacity}`, cluster.id)
      created++
      continue
    }
    // One empty active cluster at a time goes, when the rest still holds what is needed.
    const empty = inRegion.find((c) => c.status === 'active' &&
      !usage.some((u) => u.cluster_id === c.id && Number(u.n) > 0) &&
      Date.now() - c.created_at.getTime() > settings.emptyGraceMs &&
      capacity - c.capacity >= needed && inRegion.length > 1)
    if (empty) {
      await deleteCluster(db, deps, null, empty.id, false)
      await decide(db, region.code, 'delete_cluster', `empty; the other clusters hold ${capacity - empty.capacity} of the ${needed} needed`, empty.id)
      deleted++
    }
  }
  return { created, deleted }
}

async function decide (db: Kysely<DB>, region: string, action: 'create_cluster' | 'delete_cluster' | 'cannot_create', reason: string, clusterId: string | null) {
  await db.insertInto('fleet_decision').values({ region_code: region, action, reason, cluster_id: clusterId }).execute()
}

/** The latest decisions of every region (at most `perRegion` each). */
export function latestDecisions (db: Kysely<DB>, perRegion = 10) {
  return db.selectFrom((eb) => eb.selectFrom('fleet_decision')
    .select(['region_code', 'action', 'reason', 'cluster_id', 'at', sql<number>`row_number() over (partition by region_code order by at desc, id desc)`.as('rank')])
    .as('d'))
    .selectAll().where('rank', '<=', perRegion).orderBy('at', 'desc').execute()
}
