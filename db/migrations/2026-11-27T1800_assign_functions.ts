import type { Kysely } from 'kysely'

// The assignment hot path as SQL functions, so that POST /v1/containers costs one round trip to PostgreSQL
// instead of ten (measured: the round trips, not the queries, were the cost): fractal_create_container and
// fractal_assign_container. Their text lives in db/functions/<name>.sql, its one source, applied after the
// migrations by db/functions.ts (README: "Database"); this migration made their first versions, so it now
// has nothing left to do (databases that ran it keep what it made, and the apply step brings it up to date).
export async function up (_db: Kysely<any>): Promise<void> {}

export async function down (_db: Kysely<any>): Promise<void> {}
