import type { Kysely, Transaction, Updateable } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { ContainerState, ContainerTable, DB, JobTable } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

export const liveStates: ContainerState[] = ['creating', 'starting', 'available', 'in_use']

/**
 * Claims the oldest ready, unheld container of the warm pool for a user: one statement, the row locked
 * with SKIP LOCKED so concurrent claims take different containers and never wait on each other.
 */
export function findContainer (db: Db, id: string) {
  return db.selectFrom('container').selectAll().where('id', '=', id).executeTakeFirst()
}

export function updateContainer (db: Db, id: string, changes: Updateable<ContainerTable>) {
  return db.updateTable('container').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).returningAll().executeTakeFirst()
}

export function insertContainerEvent (db: Db, event: { container_id: string, from_state: ContainerState | null, to_state: ContainerState, job_id?: string | null, reason?: string | null }) {
  return db.insertInto('container_event').values(event).execute()
}

/** Containers newest first, filtered (owner null: everyone's), keyset-paginated. */
export function listContainers (db: Db, where: { owner: string | null, state: ContainerState | null, app: string | null, region: string | null }, page: { limit: number, before: { createdAt: Date, id: string } | null }) {
  return db.selectFrom('container').selectAll()
    .$if(where.owner !== null, (q) => q.where('user_id', '=', where.owner!))
    .$if(where.state !== null, (q) => q.where('state', '=', where.state!))
    .$if(where.app !== null, (q) => q.where('app_id', '=', where.app!))
    .$if(where.region !== null, (q) => q.where('region_code', '=', where.region!))
    .$if(page.before !== null, (q) => q.where((eb) => eb.or([
      eb('created_at', '<', page.before!.createdAt),
      eb.and([eb('created_at', '=', page.before!.createdAt), eb('id', '<', page.before!.id)])
    ])))
    .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(page.limit).execute()
}

export function insertJob (db: Db, values: { kind: JobTable['kind'], owner_id: string | null, message?: string, deadline_at?: Date }) {
  return db.insertInto('job').values(values).returningAll().executeTakeFirstOrThrow()
}

export function findJob (db: Db, id: string) {
  return db.selectFrom('job').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findJobs (db: Db, ids: readonly string[]) {
  // No ids: `in ()` is not SQL.
  if (ids.length === 0) return []
  return db.selectFrom('job').selectAll().where('id', 'in', ids).execute()
}

/** Updates a job; a cancelled job stays cancelled (a worker finishing late does not overwrite the cancel). */
export function updateJob (db: Db, id: string, changes: Updateable<JobTable>) {
  return db.updateTable('job').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id)
    .$if(changes.state !== 'cancelled', (q) => q.where('state', '!=', 'cancelled'))
    .execute()
}

/** The enabled regions offering an app and open (no maintenance window), with whether a warm container waits. */
export async function listOpenOffers (db: Db, appId: string) {
  const rows = await db.selectFrom('app_region')
    .innerJoin('region', 'region.code', 'app_region.region_code')
    .select((eb) => [
      'app_region.region_code', 'region.latitude', 'region.longitude',
      eb.exists(eb.selectFrom('container').select('container.id')
        .whereRef('container.app_id', '=', 'app_region.app_id').whereRef('container.region_code', '=', 'app_region.region_code')
        .where('container.state', '=', 'available').where('container.user_id', 'is', null)).as('has_warm')
    ])
    .where('app_region.app_id', '=', appId).where('region.enabled', '=', true).where('app_region.enabled', '=', true)
    .where((eb) => eb.exists(eb.selectFrom('app').select('app.id').whereRef('app.id', '=', 'app_region.app_id').where('app.enabled', '=', true)))
    .where((eb) => eb.not(eb.exists(eb.selectFrom('maintenance').select('maintenance.scope')
      .whereRef('maintenance.scope', '=', 'region.code').where('maintenance.ends_at', '>', sql<Date>`now()`))))
    .orderBy('region.sort_order').orderBy('region.code')
    .execute()
  return rows.map((r) => ({ region_code: r.region_code, latitude: r.latitude, longitude: r.longitude, warm: r.has_warm ? 1 : 0 }))
}

/** The region asked for, when it offers the app (enabled or not: the caller says which is wrong). */
/** Inserts the key; an insert racing a committed or in-flight one with the same key waits, then does nothing. */
/** A user-scoped advisory lock for one app: two assignments of one user and app take turns. */
/** The start job's last step, only if nobody stopped the container meanwhile (a cancel, a shutdown). */
export function containerOfJob (db: Db, jobId: string) {
  return db.selectFrom('container_event').select('container_id').where('job_id', '=', jobId).orderBy('id').limit(1).executeTakeFirst()
}

export function liveContainersOf (db: Db, userId: string) {
  return db.selectFrom('container').select(['id']).where('user_id', '=', userId).where('state', 'in', liveStates).execute()
}

/** An active cluster by id or by name (names are unique per region: the oldest wins across regions). */
export function findActiveCluster (db: Db, nameOrId: string) {
  const byId = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(nameOrId)
  return db.selectFrom('cluster').select(['id', 'region_code'])
    .where(byId ? 'id' : 'name', '=', nameOrId).where('status', '=', 'active')
    .orderBy('created_at').limit(1)
    .executeTakeFirst()
}

export function findClusterById (db: Db, id: string) {
  return db.selectFrom('cluster').select(['id', 'name', 'capacity_provider']).where('id', '=', id).executeTakeFirst()
}

/**
 * Bin-packing: the active cluster of the region with the most live containers that still has room
 * (fill the fullest first, so emptier clusters can scale in).
 */
export function chooseCluster (db: Db, region: string) {
  return db.selectFrom('cluster')
    .leftJoin('container', (j) => j.onRef('container.cluster_id', '=', 'cluster.id').on('container.state', 'in', [...liveStates, 'stopping']))
    .select(['cluster.id', 'cluster.name', 'cluster.capacity_provider', 'cluster.capacity', (eb) => eb.fn.count<number>('container.id').as('live')])
    .where('cluster.region_code', '=', region).where('cluster.status', '=', 'active')
    .groupBy('cluster.id')
    .having((eb) => eb(eb.fn.count('container.id'), '<', eb.ref('cluster.capacity')))
    .orderBy('live', 'desc').orderBy('cluster.created_at')
    .limit(1)
    .executeTakeFirst()
}

export function findTaskDefinition (db: Db, appId: string, region: string) {
  return db.selectFrom('app_region').select('task_definition').where('app_id', '=', appId).where('region_code', '=', region).executeTakeFirstOrThrow()
}

/** creating → starting, with its event, for the start job `jobId`. */
export async function beginStart (db: Kysely<DB>, id: string, jobId: string) {
  return db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('container').set({ state: 'starting', updated_at: sql`now()` })
      .where('id', '=', id).where('state', '=', 'creating').returningAll().executeTakeFirst()
    if (row) await insertContainerEvent(trx, { container_id: id, from_state: 'creating', to_state: 'starting', job_id: jobId })
    return row
  })
}

/** The task placed for a starting container (only while it is still starting and has none). */
export function recordTask (db: Db, id: string, task: { task_arn: string, cluster_id: string }) {
  return db.updateTable('container').set({ ...task, updated_at: sql`now()` })
    .where('id', '=', id).where('state', '=', 'starting').where('task_arn', 'is', null)
    .returningAll().executeTakeFirst()
}

/** The task runs: where to reach it. Still `starting` until the first ping. */
export function recordRunning (db: Db, id: string, host: { host_ip: string, host_instance_id: string | null, port_32262: number, port_32263: number, port_32273: number }) {
  return db.updateTable('container').set({ ...host, running_at: sql`now()`, updated_at: sql`now()` })
    .where('id', '=', id).where('state', '=', 'starting')
    .returningAll().executeTakeFirst()
}

/** starting → ready once the task runs and the container pinged; null when either is missing. */
export function finishStart (db: Db, id: string) {
  return db.updateTable('container')
    .set({ state: sql`case when user_id is null then 'available' else 'in_use' end`, updated_at: sql`now()` })
    .where('id', '=', id).where('state', '=', 'starting')
    .where('host_ip', 'is not', null).where('last_ping_at', 'is not', null)
    .returningAll().executeTakeFirst()
}

/** Ends the open client connection rows of a container (a logoff, or the container ending). */
export function closeSessions (db: Db, containerId: string) {
  return db.updateTable('container_session').set({ logoff_at: sql`now()` })
    .where('container_id', '=', containerId).where('logoff_at', 'is', null).execute()
}

export function openSession (db: Db, containerId: string, userId: string | null) {
  return db.insertInto('container_session').values({ container_id: containerId, user_id: userId }).execute()
}

/** A held container's time, once (its stop): seconds since it was handed over (or ran, or was made) until now, or until a limit ended its session. */
export function recordUsage (db: Db, container: { id: string, user_id: string | null, assigned_at: Date | null, running_at: Date | null, created_at: Date, session_ended_at: Date | null }) {
  const since = container.assigned_at ?? container.running_at ?? container.created_at
  // A session a limit ended counts up to that end, not to when its stop job got to it.
  const until = container.session_ended_at ?? new Date()
  return db.insertInto('usage_record').values({
    container_id: container.id,
    user_id: container.user_id!,
    seconds: Math.max(0, Math.round((until.getTime() - since.getTime()) / 1000)),
    ended_at: until
  }).onConflict((oc) => oc.column('container_id').doNothing()).execute()
}
