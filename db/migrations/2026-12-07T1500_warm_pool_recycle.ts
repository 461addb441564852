import type { Kysely } from 'kysely'

// Issue 23, item 2: a forced recycle of a warm pool (recycleWarmPool). Its warm containers made before
// `recycle_before` count as expired, as if past the maximum age: the reconciliation pass replaces them first
// and stops them once their replacements are ready; a container in use is never touched.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('warm_pool').addColumn('recycle_before', 'timestamptz').execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('warm_pool').dropColumn('recycle_before').execute()
}
