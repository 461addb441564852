// Issue 20: a first `npm start` took 18 s, most of it initdb of PGlite in WebAssembly and the migrations; a fresh
// embedded database now starts from the migrated baseline (db/baseline.ts). These tests hold the baseline to
// the migrations: the schema it gives is the one they give on PostgreSQL, and migrations written after it run.
import { promises as fs } from 'node:fs'
import path from 'node:path'
import type { Kysely } from 'kysely'
import { FileMigrationProvider, sql } from '../../db/kysely.js'
import t, { type Test } from 'tap'
import { installedPgliteVersion, readBaselineManifest } from '../../db/baseline.js'
import { createDatabase } from '../../db/database.js'
import { createMigrator, migrateToLatest } from '../../db/migrator.js'
import { emptyTestDatabase } from '../helpers/database.js'

const migrationFolder = path.join(import.meta.dirname, '../../db/migrations')

/** A fresh, empty PostgreSQL database, migrated as `npm run db:migrate` migrates one. */
async function migratedPostgres (t: Test) {
  const db = await emptyTestDatabase(t)
  await migrateToLatest(db)
  return db
}

/** An in-memory PGlite made from the baseline, then migrated to the latest (as a first `npm start`). */
async function pgliteFromBaseline (t: Test) {
  const { db, started } = await createDatabase({ url: null, dataDir: '', poolMax: 1, inMemory: true, baseline: true })
  t.teardown(() => db.destroy())
  return { db, started, migrated: await migrateToLatest(db) }
}

/**
 * What the migrations make, as the catalog tells it: tables and their columns, constraints, indexes,
 * sequences, functions, triggers and enums of the public schema, and the migrations recorded as applied.
 */
async function schemaOf (db: Kysely<any>) {
  const rows = async (query: ReturnType<typeof sql>) => (await query.execute(db)).rows.map((r) => JSON.stringify(r))
  return {
    columns: await rows(sql`select table_name, column_name, data_type, udt_name, is_nullable, column_default, character_maximum_length, numeric_precision
      from information_schema.columns where table_schema = 'public' order by table_name, column_name`),
    constraints: await rows(sql`select c.conrelid::regclass::text as tbl, c.conname, c.contype, pg_get_constraintdef(c.oid) as def
      -- PostgreSQL 17 (PGlite) also lists NOT NULL here (contype n); columns' is_nullable covers them on both.
      from pg_constraint c join pg_namespace n on n.oid = c.connamespace where n.nspname = 'public' and c.contype <> 'n' order by 1, 2`),
    indexes: await rows(sql`select tablename, indexname, indexdef from pg_indexes where schemaname = 'public' order by 1, 2`),
    sequences: await rows(sql`select sequence_name, data_type, start_value, increment from information_schema.sequences where sequence_schema = 'public' order by 1`),
    functions: await rows(sql`select p.proname, pg_get_function_identity_arguments(p.oid) as args, md5(pg_get_functiondef(p.oid)) as def
      from pg_proc p join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'public' order by 1, 2`),
    triggers: await rows(sql`select event_object_table, trigger_name, action_timing, event_manipulation, action_statement
      from information_schema.triggers where trigger_schema = 'public' order by 1, 2, 4`),
    enums: await rows(sql`select t.typname, array_agg(e.enumlabel order by e.enumsortorder)::text as labels
      from pg_type t join pg_enum e on e.enumtypid = t.oid join pg_namespace n on n.oid = t.typnamespace where n.nspname = 'public' group by 1 order by 1`),
    migrations: await rows(sql`select name from kysely_migration order by name`),
    functionFiles: await rows(sql`select name, hash from sql_function order by name`)
  }
}

t.test('baseline › npm install made it for the installed PGlite, else a first start is slow again (npm run db:baseline)', async (t) => {
  const manifest = readBaselineManifest()
  t.ok(manifest, 'node_modules/.cache/fractal-pglite/baseline.tar.br and its manifest exist')
  t.equal(manifest?.pglite, installedPgliteVersion(), 'written by this PGlite version')
})

t.test('baseline › a fresh embedded database made from it has the schema the migrations make on PostgreSQL', async (t) => {
  const [postgres, pglite] = await Promise.all([migratedPostgres(t), pgliteFromBaseline(t)])
  t.same(pglite.started, { from: 'baseline' })
  const [expected, actual] = [await schemaOf(postgres), await schemaOf(pglite.db)]
  t.ok(expected.columns.length > 100 && expected.functions.length >= 4, 'a real schema is compared')
  for (const part of Object.keys(expected) as Array<keyof typeof expected>) t.same(actual[part], expected[part], part)
})

t.test('baseline › a migration written after it still runs on a database made from it', async (t) => {
  const { db } = await pgliteFromBaseline(t)
  const files = new FileMigrationProvider({ fs, path, migrationFolder })
  const later = {
    async getMigrations () {
      return {
        ...(await files.getMigrations()),
        '9999-12-31T2359_after_the_baseline': {
          async up (db: Kysely<any>) { await db.schema.createTable('after_baseline').addColumn('id', 'integer', (c) => c.primaryKey()).execute() }
        }
      }
    }
  }
  const result = await createMigrator(db, later).migrateToLatest()
  t.error(result.error)
  t.same(result.results?.map((r) => [r.migrationName, r.status]), [['9999-12-31T2359_after_the_baseline', 'Success']], 'only the new one runs')
  await sql`insert into after_baseline (id) values (1)`.execute(db)
  t.equal((await sql<{ n: number }>`select count(*)::int as n from after_baseline`.execute(db)).rows[0]?.n, 1)
})
