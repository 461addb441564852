import { sql, type Kysely } from 'kysely'

// The entitlement check moves into the assignment's one round trip (it cost a second round trip, 42 % of
// the warm-pool assignment throughput). fractal_entitlement is the one function that answers "may this
// user start a container now, within which limits?" from local state; fractal_assign_container calls it
// when billing is enforced (p_terms not null) and applies the plan's regions, DPI and containers-at-once.
// Errors: FR008 payment required (detail: why), FR009 region not in the plan, FR010 DPI above the plan's.
//
// The functions' text lives in db/functions/<name>.sql, applied after the migrations (db/functions.ts); what
// stays here is the signature change: fractal_assign_container gained p_terms and p_prefer, and
// `create or replace` cannot change a function's arguments, so the old signature is dropped (if this database
// has it: a fresh one never does).
export async function up (db: Kysely<any>): Promise<void> {
  await sql`drop function if exists fractal_assign_container(uuid, text, text, text, text, integer, text, text, timestamptz, integer)`.execute(db)
}

// The functions follow the code (db/functions/), not the migration version: nothing to undo here.
export async function down (_db: Kysely<any>): Promise<void> {}
