import { sql, type Kysely } from 'kysely'

// Issue 22, items 3-5: warm pools an operator can read, plan and pause.
// - warm_pool: a pool's own settings beside app_region's target (paused, maximum age of its warm
//   containers) and the outcome of the last reconciliation pass (refillWarmPools), one row per pool made
//   on first use. Deleting the offer (app_region) deletes it.
// - warm_pool_schedule: desired counts by day of week and wall-clock time in an IANA time zone. Times are
//   minutes since midnight; an end at or before the start runs past midnight into the next day. One time zone
//   per pool and no overlap are checked by the service (services/containers/containers.warm-pools.ts).
// fractal_assign_container (db/functions/) reads warm_pool.paused before it claims a warm container.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.createTable('warm_pool')
    .addColumn('app_id', 'text', (c) => c.notNull())
    .addColumn('region_code', 'text', (c) => c.notNull())
    .addColumn('paused', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('paused_at', 'timestamptz')
    .addColumn('max_age_seconds', 'integer')
    .addColumn('last_pass_at', 'timestamptz')
    .addColumn('last_decision', 'text')
    .addColumn('last_desired', 'integer')
    .addColumn('last_started', 'integer')
    .addColumn('last_stopped', 'integer')
    .addColumn('last_reason', 'text')
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('warm_pool_pkey', ['app_id', 'region_code'])
    .addForeignKeyConstraint('warm_pool_app_region_fkey', ['app_id', 'region_code'], 'app_region', ['app_id', 'region_code'], (fk) => fk.onDelete('cascade'))
    .addCheckConstraint('warm_pool_max_age_seconds_check', sql`max_age_seconds is null or max_age_seconds >= 0`)
    .addCheckConstraint('warm_pool_last_decision_check', sql`last_decision in ('steady', 'grow', 'shrink', 'rebalance', 'paused', 'closed')`)
    .execute()

  await db.schema.createTable('warm_pool_schedule')
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('app_id', 'text', (c) => c.notNull())
    .addColumn('region_code', 'text', (c) => c.notNull())
    .addColumn('days', sql`text[]`, (c) => c.notNull())
    .addColumn('start_minute', 'integer', (c) => c.notNull())
    .addColumn('end_minute', 'integer', (c) => c.notNull())
    .addColumn('time_zone', 'text', (c) => c.notNull())
    .addColumn('desired', 'integer', (c) => c.notNull())
    .addColumn('name', 'text')
    .addColumn('created_by', 'uuid')
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('warm_pool_schedule_pkey', ['id'])
    .addForeignKeyConstraint('warm_pool_schedule_app_region_fkey', ['app_id', 'region_code'], 'app_region', ['app_id', 'region_code'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('warm_pool_schedule_created_by_fkey', ['created_by'], 'account', ['id'], (fk) => fk.onDelete('set null'))
    .addCheckConstraint('warm_pool_schedule_minutes_check', sql`start_minute between 0 and 1439 and end_minute between 1 and 1440 and start_minute <> end_minute`)
    .addCheckConstraint('warm_pool_schedule_desired_check', sql`desired between 0 and 1000`)
    .execute()
  await db.schema.createIndex('warm_pool_schedule_app_id_region_code_idx').on('warm_pool_schedule').columns(['app_id', 'region_code']).execute()
  await db.schema.createIndex('warm_pool_schedule_created_by_idx').on('warm_pool_schedule').column('created_by').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('warm_pool_schedule').execute()
  await db.schema.dropTable('warm_pool').execute()
}
