import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // Where a start job places tasks: the cluster's capacity provider (the fleet issue creates them).
  await db.schema.alterTable('cluster')
    .addColumn('capacity_provider', 'text')
    .execute()
  await sql`update cluster set capacity_provider = name || '-capacity' where capacity_provider is null`.execute(db)

  await db.schema.alterTable('container')
    // The job that starts it: a first ping completes that job.
    .addColumn('start_job_id', 'uuid')
    // Whether a client is connected now (pings say so); each connection is a row of container_session.
    .addColumn('client_connected', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('running_at', 'timestamptz')
    .execute()
  // The reaper's scans: live containers by last ping, tasks of a cluster.
  await sql`create index container_live_ping_idx on container (last_ping_at) where state in ('available', 'in_use')`.execute(db)
  await sql`create index container_cluster_live_idx on container (cluster_id) where state in ('creating', 'starting', 'available', 'in_use', 'stopping')`.execute(db)
  await sql`create index job_open_idx on job (deadline_at) where state in ('queued', 'running')`.execute(db)
  // Committed, but the queue could not take it (Redis away): the reaper enqueues it on its next pass.
  await db.schema.alterTable('job').addColumn('needs_enqueue', 'boolean', (c) => c.notNull().defaultTo(false)).execute()
  await sql`create index job_needs_enqueue_idx on job (created_at) where needs_enqueue`.execute(db)

  // Logon/logoff history: one row per client connection to a container.
  await db.schema.createTable('container_session')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity())
    .addColumn('container_id', 'uuid', (c) => c.notNull())
    .addColumn('user_id', 'uuid')
    .addColumn('logon_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('logoff_at', 'timestamptz')
    .addPrimaryKeyConstraint('container_session_pkey', ['id'])
    .addForeignKeyConstraint('container_session_container_id_fkey', ['container_id'], 'container', ['id'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('container_session_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('set null'))
    .execute()
  await db.schema.createIndex('container_session_container_id_idx').on('container_session').column('container_id').execute()
  await sql`create index container_session_user_idx on container_session (user_id, logon_at desc) where user_id is not null`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('container_session').execute()
  await db.schema.alterTable('job').dropColumn('needs_enqueue').execute()
  await sql`drop index job_open_idx`.execute(db)
  await sql`drop index container_cluster_live_idx`.execute(db)
  await sql`drop index container_live_ping_idx`.execute(db)
  await db.schema.alterTable('container').dropColumn('running_at').dropColumn('client_connected').dropColumn('start_job_id').execute()
  await db.schema.alterTable('cluster').dropColumn('capacity_provider').execute()
}
