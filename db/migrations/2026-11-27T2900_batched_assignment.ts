import type { Kysely } from 'kysely'

// Two changes to the assignment's SQL, both found by the warm-pool bench:
//
// 1. fractal_assign_container wrote its answer into the Idempotency-Key row with
//    `update ... where user_id = p_user and key = p_key`. PL/pgSQL caches that statement's plan per session,
//    and a session that planned it while idempotency_record was nearly empty (a fresh database, before the
//    first autoanalyze) kept a sequential scan: every assignment read the whole table, and throughput fell
//    as the table grew (4,400 → 1,300 a second within ten seconds). The answer is now written by an upsert on
//    the primary key, whose conflict check always goes through the unique index, whatever the statistics.
//
// 2. fractal_assign_containers: many assignments in one call and one transaction (group commit). Each runs
//    in a block of its own (a subtransaction): one that raises (FR0xx, or any error) is rolled back alone and
//    answered {"error": {code, message, detail}}, the others {"ok": <fractal_assign_container's answer>}, in
//    the order given. Callers order a batch by user and key, so two batches take their locks in one order and
//    never wait on each other in a cycle. Measured straight against PostgreSQL, 100 concurrent assignments:
//    one call each 3,150/s and 475 µs of PostgreSQL CPU per assignment; batches of up to 32, two at a time,
//    5,700/s and 291 µs.
//
// Both now live in db/functions/ (fractal_assign_container.sql, fractal_assign_containers.sql), their one
// source, applied after the migrations by db/functions.ts: this migration has nothing left to do.
export async function up (_db: Kysely<any>): Promise<void> {}

export async function down (_db: Kysely<any>): Promise<void> {}
