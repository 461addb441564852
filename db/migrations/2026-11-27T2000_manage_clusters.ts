import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // Clusters the fleet feature creates and deletes: what they run on, and each step done (so a retried job
  // resumes where it stopped and a failed one tears down exactly what it made).
  await db.schema.alterTable('cluster')
    .addColumn('instance_type', 'text')
    .addColumn('ami', 'text')
    .addColumn('min_size', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('max_size', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('steps', 'jsonb', (c) => c.notNull().defaultTo(sql`'{}'::jsonb`))
    .addColumn('usage', 'jsonb')
    .addColumn('job_id', 'uuid')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .execute()
  await sql`alter table cluster add constraint cluster_status_check check (status in ('creating', 'active', 'deleting', 'deleted', 'failed'))`.execute(db)
  await sql`alter table cluster add constraint cluster_sizes_check check (min_size >= 0 and max_size >= min_size)`.execute(db)
  await sql`create index cluster_region_status_idx on cluster (region_code, status)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop index cluster_region_status_idx`.execute(db)
  await sql`alter table cluster drop constraint cluster_sizes_check`.execute(db)
  await sql`alter table cluster drop constraint cluster_status_check`.execute(db)
  await db.schema.alterTable('cluster')
    .dropColumn('updated_at').dropColumn('job_id').dropColumn('usage').dropColumn('steps')
    .dropColumn('max_size').dropColumn('min_size').dropColumn('ami').dropColumn('instance_type')
    .execute()
}
