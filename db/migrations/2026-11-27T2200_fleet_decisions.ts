import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // What the scaling schedule decided and why, per region: the fleet view shows the latest.
  await db.schema.createTable('fleet_decision')
    .addColumn('id', 'bigint', (c) => c.generatedAlwaysAsIdentity())
    .addColumn('region_code', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('reason', 'text', (c) => c.notNull())
    .addColumn('cluster_id', 'uuid')
    .addColumn('at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('fleet_decision_pkey', ['id'])
    .addCheckConstraint('fleet_decision_action_check', sql`action in ('create_cluster', 'delete_cluster', 'cannot_create')`)
    .execute()
  await sql`create index fleet_decision_region_at_idx on fleet_decision (region_code, at desc)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('fleet_decision').execute()
}
