import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB, HostStatus } from '../../db/types.js'
import { warmPools } from '../containers/containers.warm-pools.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import { latestDecisions } from './fleet.scaling.js'

export async function listHosts (db: Kysely<DB>, filters: { limit: number, cursor?: string | undefined, region?: string | undefined, status?: HostStatus | undefined }) {
  const before = filters.cursor ? decodeKeyset(filters.cursor) : null
  const rows = await db.selectFrom('host').selectAll()
    .$if(filters.region !== undefined, (q) => q.where('region_code', '=', filters.region!))
    .$if(filters.status !== undefined, (q) => q.where('status', '=', filters.status!))
    .$if(before !== null, (q) => q.where((eb) => eb.or([
      eb('created_at', '<', before!.createdAt),
      eb.and([eb('created_at', '=', before!.createdAt), eb('id', '<', before!.id)])
    ])))
    .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filters.limit + 1).execute()
  return pageOf(rows, filters.limit)
}

/** Per region: clusters with their live containers, hosts by status, containers by state, warm pools, scaling decisions. Six queries. */
export async function getFleet (db: Kysely<DB>) {
  const [regions, clusters, hosts, containers, pools, decisions] = await Promise.all([
    db.selectFrom('region').select(['code', 'enabled']).orderBy('sort_order').orderBy('code').execute(),
    db.selectFrom('cluster')
      .leftJoin('container', (j) => j.onRef('container.cluster_id', '=', 'cluster.id').on('container.state', 'in', ['creating', 'starting', 'available', 'in_use', 'stopping']))
      .select(['cluster.id', 'cluster.name', 'cluster.status', 'cluster.capacity', 'cluster.region_code', (eb) => eb.fn.count<number>('container.id').as('live')])
      .groupBy('cluster.id').orderBy('cluster.created_at').execute(),
    db.selectFrom('host').select(['region_code', 'status', (eb) => eb.fn.countAll<number>().as('n')]).groupBy(['region_code', 'status']).execute(),
    db.selectFrom('container').select(['region_code', 'state', (eb) => eb.fn.countAll<number>().as('n')])
      .where((eb) => eb.or([eb('state', 'not in', ['stopped', 'failed']), eb('updated_at', '>', sql<Date>`now() - interval '24 hours'`)]))
      .groupBy(['region_code', 'state']).execute(),
    warmPools(db),
    latestDecisions(db)
  ])
  return regions.map((r) => ({
    region: r.code,
    enabled: r.enabled,
    clusters: clusters.filter((c) => c.region_code === r.code)
      .map((c) => ({ id: c.id, name: c.name, status: c.status, capacity: c.capacity, liveContainers: Number(c.live) })),
    hosts: {
      active: Number(hosts.find((h) => h.region_code === r.code && h.status === 'active')?.n ?? 0),
      draining: Number(hosts.find((h) => h.region_code === r.code && h.status === 'draining')?.n ?? 0),
      dead: Number(hosts.find((h) => h.region_code === r.code && h.status === 'dead')?.n ?? 0)
    },
    containers: Object.fromEntries(containers.filter((c) => c.region_code === r.code).map((c) => [c.state, Number(c.n)])),
    warmPools: pools.filter((p) => p.region_code === r.code)
      .map((p) => ({ app: p.app_id, region: p.region_code, target: p.warm_pool_target, ready: Number(p.ready), starting: Number(p.starting) })),
    decisions: decisions.filter((d) => d.region_code === r.code)
      .map((d) => ({ action: d.action, reason: d.reason, clusterId: d.cluster_id, at: new Date(d.at).toISOString() }))
  }))
}
