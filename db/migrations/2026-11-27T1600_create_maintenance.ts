import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // Maintenance windows: a row with an owner and an end, never a lock a crashed process could leave behind.
  await db.schema.createTable('maintenance')
    .addColumn('scope', 'text', (c) => c.notNull())
    .addColumn('message', 'text', (c) => c.notNull())
    .addColumn('owner_id', 'uuid')
    .addColumn('starts_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('ends_at', 'timestamptz', (c) => c.notNull())
    .addPrimaryKeyConstraint('maintenance_pkey', ['scope'])
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('maintenance').execute()
}
