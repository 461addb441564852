import { sql, type Kysely } from 'kysely'

// Issue 23: the catalog run through the API, and usage reports.
export async function up (db: Kysely<any>): Promise<void> {
  // An app can be taken out of the catalog (kept, with its history) and carries the DPI its containers start with.
  await db.schema.alterTable('app')
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('dpi_default', 'integer', (c) => c.notNull().defaultTo(96))
    .execute()
  await db.schema.alterTable('app').addCheckConstraint('app_dpi_default_check', sql`dpi_default between 72 and 480`).execute()
  // An app can be switched off in one region without losing its task definition there.
  await db.schema.alterTable('app_region').addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true)).execute()

  // The plans that include an app.
  await db.schema.createTable('plan_app')
    .addColumn('plan_id', 'text', (c) => c.notNull())
    .addColumn('app_id', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('plan_app_pkey', ['plan_id', 'app_id'])
    .addForeignKeyConstraint('plan_app_plan_id_fkey', ['plan_id'], 'plan', ['id'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('plan_app_app_id_fkey', ['app_id'], 'app', ['id'], (fk) => fk.onDelete('cascade'))
    .execute()
  await db.schema.createIndex('plan_app_app_id_idx').on('plan_app').column('app_id').execute()

  // Usage reports group by plan: the plan a user was on when the time was recorded, kept on the record (a
  // later change of plan does not move past hours). Set by a trigger, so every writer of usage_record gets it.
  await db.schema.alterTable('usage_record').addColumn('plan_id', 'text').execute()
  await sql`create function usage_record_plan() returns trigger language plpgsql as $$
    begin
      if new.plan_id is null then
        select plan_id into new.plan_id from subscription where user_id = new.user_id;
      end if;
      return new;
    end $$`.execute(db)
  await sql`create trigger usage_record_plan_trg before insert on usage_record
    for each row execute function usage_record_plan()`.execute(db)
  await sql`update usage_record u set plan_id = s.plan_id from subscription s where s.user_id = u.user_id and u.plan_id is null`.execute(db)
  // Reports read a day or a month of records, whoever they belong to.
  await db.schema.createIndex('usage_record_ended_at_idx').on('usage_record').column('ended_at').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('usage_record_ended_at_idx').execute()
  await sql`drop trigger usage_record_plan_trg on usage_record`.execute(db)
  await sql`drop function usage_record_plan()`.execute(db)
  await db.schema.alterTable('usage_record').dropColumn('plan_id').execute()
  await db.schema.dropTable('plan_app').execute()
  await db.schema.alterTable('app_region').dropColumn('enabled').execute()
  await db.schema.alterTable('app').dropConstraint('app_dpi_default_check').execute()
  await db.schema.alterTable('app').dropColumn('dpi_default').dropColumn('enabled').execute()
}
