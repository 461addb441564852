import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // A parent job (an AMI roll) and its child jobs (one per cluster), each with its own progress.
  await db.schema.alterTable('job').addColumn('parent_id', 'uuid', (c) => c.references('job.id').onDelete('cascade')).execute()
  await sql`create index job_parent_id_idx on job (parent_id, created_at) where parent_id is not null`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('job').dropColumn('parent_id').execute()
}
