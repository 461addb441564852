import { sql, type Kysely } from 'kysely'

// Issue 23: personal access tokens (a user's or an operator's own automation credentials), the sign-up reason
// and referral code operators read, and a developer's assignment onto a named cluster.
export async function up (db: Kysely<any>): Promise<void> {
  // The secret is never stored: sha256 of the whole token (256 random bits, so no slow hash is needed).
  // `prefix` is the part shown again later, for recognition. `use_audited_at`: the last use written to the
  // audit trail (the first use of each hour is).
  await db.schema.createTable('personal_access_token')
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('account_id', 'uuid', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('token_hash', 'text', (c) => c.notNull())
    .addColumn('scopes', sql`text[]`, (c) => c.notNull())
    .addColumn('read_only', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_used_at', 'timestamptz')
    .addColumn('use_audited_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`date_trunc('milliseconds', now())`))
    .addColumn('revoked_at', 'timestamptz')
    .addPrimaryKeyConstraint('personal_access_token_pkey', ['id'])
    .addForeignKeyConstraint('personal_access_token_account_id_fkey', ['account_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .addUniqueConstraint('personal_access_token_hash_uq', ['token_hash'])
    .execute()
  // An account's tokens newest first, and every account's (the admin list).
  await db.schema.createIndex('personal_access_token_account_idx').on('personal_access_token').columns(['account_id', 'created_at', 'id']).execute()
  await db.schema.createIndex('personal_access_token_created_at_idx').on('personal_access_token').columns(['created_at', 'id']).execute()
  // Keyset cursors carry created_at to the millisecond (as in T2100).
  await sql`create trigger personal_access_token_created_at_ms_trg before insert or update of created_at on personal_access_token
    for each row execute function created_at_to_milliseconds()`.execute(db)

  await db.schema.alterTable('account')
    .addColumn('sign_up_reason', 'text')
    .addColumn('referral_code', 'text')
    .execute()

  // fractal_assign_container gains p_cluster (db/functions/fractal_assign_container.sql), and `create or
  // replace` cannot change a function's arguments: the old signature goes (if this database has it).
  await sql`drop function if exists fractal_assign_container(uuid, text, text, text, text, integer, text, text, timestamptz, jsonb, text[])`.execute(db)
}

// The functions follow the code (db/functions/), not the migration version: they are not undone here.
export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('account').dropColumn('referral_code').dropColumn('sign_up_reason').execute()
  await db.schema.dropTable('personal_access_token').execute()
}
