import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // A user's cloud storage (Google Drive, Dropbox): tokens encrypted with AES-256-GCM, the key id beside them.
  await db.schema.createTable('storage_connection')
    .addColumn('user_id', 'uuid', (c) => c.notNull())
    .addColumn('provider', 'text', (c) => c.notNull())
    .addColumn('account_email', 'text')
    .addColumn('access_token', 'text', (c) => c.notNull())
    .addColumn('refresh_token', 'text')
    .addColumn('key_id', 'text', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz')
    .addColumn('status', 'text', (c) => c.notNull().defaultTo('connected'))
    .addColumn('connected_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('storage_connection_pkey', ['user_id', 'provider'])
    .addForeignKeyConstraint('storage_connection_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .addCheckConstraint('storage_connection_status_check', sql`status in ('connected', 'needs_reauth')`)
    .execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('storage_connection').execute()
}
