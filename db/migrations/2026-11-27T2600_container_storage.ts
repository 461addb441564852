import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // The cloud storage the host agent mounted in a container (provider codes).
  await db.schema.alterTable('container').addColumn('storage_mounts', sql`text[]`, (c) => c.notNull().defaultTo(sql`'{}'::text[]`)).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('container').dropColumn('storage_mounts').execute()
}
