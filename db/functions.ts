import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Kysely } from 'kysely'
import { sql } from './kysely.js'

/**
 * The SQL functions the code calls (db/functions/<name>.sql, one `create or replace function <name>` each) are
 * applied after the migrations, like Flyway's repeatable migrations: a file whose text changed since it was
 * last applied (by SHA-256, recorded in `sql_function`), or whose function is missing, is run again. So a
 * function has one source, its file, and its body follows the code; a migration only drops a signature the
 * code no longer uses (`create or replace` cannot change arguments or the return type). docs/database.md.
 */
export const functionsFolder = fileURLToPath(new URL('./functions', import.meta.url))

export interface SqlFunctionFile { name: string, text: string, hash: string }

/** The function files, in name order (the order they are applied in). */
export function functionFiles (folder = functionsFolder): SqlFunctionFile[] {
  return readdirSync(folder).filter((file) => file.endsWith('.sql')).sort().map((file) => {
    const text = readFileSync(`${folder}/${file}`, 'utf8')
    return { name: file.slice(0, -'.sql'.length), text, hash: createHash('sha256').update(text).digest('hex') }
  })
}

// One applier at a time across processes (web replicas migrating on start, a release step).
const lockKey = 727_275

/** The files not applied as they are now: changed, new, or their function gone (dropped by a `down`). */
async function stale (db: Kysely<any>, files: SqlFunctionFile[]): Promise<SqlFunctionFile[]> {
  if (files.length === 0) return []
  const { rows } = await sql<{ name: string, hash: string | null, present: boolean }>`
    select f.name, s.hash, exists (select 1 from pg_proc p where p.proname = f.name) as present
    from unnest(${files.map((f) => f.name)}::text[]) as f(name) left join sql_function s on s.name = f.name`.execute(db)
  const applied = new Map(rows.map((r) => [r.name, r.present ? r.hash : null]))
  return files.filter((f) => applied.get(f.name) !== f.hash)
}

/** Applies the function files that are not current, in one transaction; calls `report` once per file applied. */
export async function applyFunctions (db: Kysely<any>, report: (line: string) => void = () => {}, folder = functionsFolder): Promise<string[]> {
  const files = functionFiles(folder)
  const applied = await db.transaction().execute(async (trx) => {
    await sql`select pg_advisory_xact_lock(${lockKey})`.execute(trx)
    await sql`create table if not exists sql_function (
      name text constraint sql_function_pkey primary key,
      hash text not null,
      applied_at timestamptz not null default now()
    )`.execute(trx)
    const todo = await stale(trx, files)
    for (const file of todo) {
      await sql.raw(file.text).execute(trx)
      await sql`insert into sql_function (name, hash) values (${file.name}, ${file.hash})
        on conflict (name) do update set hash = excluded.hash, applied_at = now()`.execute(trx)
    }
    return todo.map((f) => f.name)
  })
  for (const name of applied) report(`function ${name}: applied`)
  return applied
}

/** The function files the database does not have as they are now (all of them before the first apply). */
export async function pendingFunctions (db: Kysely<any>, folder = functionsFolder): Promise<string[]> {
  const files = functionFiles(folder)
  const { rows } = await sql<{ exists: boolean }>`select to_regclass('sql_function') is not null as exists`.execute(db)
  if (!rows[0]?.exists) return files.map((f) => f.name)
  return (await stale(db, files)).map((f) => f.name)
}
