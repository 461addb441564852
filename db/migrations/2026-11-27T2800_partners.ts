import { sql, type Kysely } from 'kysely'

// Partners (schools, companies) whose people stream through us, and the API keys they read with.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('partner')
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`date_trunc('milliseconds', now())`))
    .addPrimaryKeyConstraint('partner_pkey', ['id'])
    .execute()
  await sql`create unique index partner_name_uq on partner (lower(name))`.execute(db)
  await db.schema.createIndex('partner_created_at_idx').on('partner').columns(['created_at', 'id']).execute()

  // The secret is never stored: sha256 of the whole key (256 random bits, so no slow hash is needed).
  // `prefix` is the part shown again later, for recognition.
  await db.schema.createTable('partner_api_key')
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('partner_id', 'uuid', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('prefix', 'text', (c) => c.notNull())
    .addColumn('key_hash', 'text', (c) => c.notNull())
    .addColumn('scopes', sql`text[]`, (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('last_used_at', 'timestamptz')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`date_trunc('milliseconds', now())`))
    .addColumn('revoked_at', 'timestamptz')
    .addPrimaryKeyConstraint('partner_api_key_pkey', ['id'])
    .addForeignKeyConstraint('partner_api_key_partner_id_fkey', ['partner_id'], 'partner', ['id'], (fk) => fk.onDelete('cascade'))
    .addUniqueConstraint('partner_api_key_hash_uq', ['key_hash'])
    .execute()
  await db.schema.createIndex('partner_api_key_partner_idx').on('partner_api_key').columns(['partner_id', 'created_at', 'id']).execute()

  // Keyset cursors carry created_at to the millisecond (as in T2100).
  for (const table of ['partner', 'partner_api_key']) {
    await sql`create trigger ${sql.raw(`${table}_created_at_ms_trg`)} before insert or update of created_at on ${sql.table(table)}
      for each row execute function created_at_to_milliseconds()`.execute(db)
  }

  await db.schema.alterTable('account').addColumn('partner_id', 'uuid').execute()
  await db.schema.alterTable('account')
    .addForeignKeyConstraint('account_partner_id_fkey', ['partner_id'], 'partner', ['id'], (fk) => fk.onDelete('set null'))
    .execute()
  // A partner's people, newest first (its users list and the usage and containers queries start here).
  await sql`create index account_partner_idx on account (partner_id, created_at desc, id desc)
    where partner_id is not null and deleted_at is null`.execute(db)
  // The live containers of given users (the partner's running containers), without their stopped history.
  await sql`create index container_live_user_idx on container (user_id)
    where user_id is not null and state in ('creating', 'starting', 'available', 'in_use')`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await sql`drop index container_live_user_idx`.execute(db)
  await sql`drop index account_partner_idx`.execute(db)
  await db.schema.alterTable('account').dropConstraint('account_partner_id_fkey').execute()
  await db.schema.alterTable('account').dropColumn('partner_id').execute()
  await db.schema.dropTable('partner_api_key').execute()
  await db.schema.dropTable('partner').execute()
}
