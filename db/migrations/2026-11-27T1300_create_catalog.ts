import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('region')
    .addColumn('code', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('enabled', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('latitude', 'double precision', (c) => c.notNull())
    .addColumn('longitude', 'double precision', (c) => c.notNull())
    .addColumn('current_ami', 'text')
    .addColumn('sort_order', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('region_pkey', ['code'])
    .execute()

  await db.schema.createTable('app')
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('description', 'text', (c) => c.notNull())
    .addColumn('icon_url', 'text', (c) => c.notNull())
    .addColumn('category', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('app_pkey', ['id'])
    .execute()

  // Where an app is offered: its ECS task definition and warm-pool target per region.
  await db.schema.createTable('app_region')
    .addColumn('app_id', 'text', (c) => c.notNull())
    .addColumn('region_code', 'text', (c) => c.notNull())
    .addColumn('task_definition', 'text', (c) => c.notNull())
    .addColumn('warm_pool_target', 'integer', (c) => c.notNull().defaultTo(0))
    .addPrimaryKeyConstraint('app_region_pkey', ['app_id', 'region_code'])
    .addForeignKeyConstraint('app_region_app_id_fkey', ['app_id'], 'app', ['id'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('app_region_region_code_fkey', ['region_code'], 'region', ['code'])
    .addCheckConstraint('app_region_warm_pool_target_check', sql`warm_pool_target >= 0`)
    .execute()
  await db.schema.createIndex('app_region_region_code_idx').on('app_region').column('region_code').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('app_region').execute()
  await db.schema.dropTable('app').execute()
  await db.schema.dropTable('region').execute()
}
