import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import pg from 'pg'
import tap from 'tap'
import { createDatabase } from '../../db/database.js'
import type { DB } from '../../db/types.js'
import { databaseUrl, templateName, urlFor } from './env.js'

/** Clones the migrated template: `CREATE DATABASE … TEMPLATE …`. */
async function cloneTemplate (): Promise<string> {
  const name = `fractal_test_${Date.now()}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`create database "${name}" template "${templateName()}"`)
    // A test database need not survive a crash of the server: commits do not wait for the WAL to reach the
    // disk (the same answers, much less waiting on fsync on a shared machine).
    await admin.query(`alter database "${name}" set synchronous_commit = off`)
  } finally {
    await admin.end()
  }
  return name
}

async function dropDatabase (name: string): Promise<void> {
  const client = new pg.Client({ connectionString: databaseUrl })
  await client.connect()
  try {
    await client.query(`drop database if exists "${name}" with (force)`)
  } finally {
    await client.end()
  }
}

/** A fresh database cloned from the migrated template, dropped by `drop()`. */
export async function createTestDatabase (): Promise<{ name: string, url: string, drop (): Promise<void> }> {
  const name = await cloneTemplate()
  return { name, url: urlFor(name), drop: () => dropDatabase(name) }
}

// Cloning costs PostgreSQL ~0.4 s of CPU (it writes and syncs every file of the ~9 MB database, most of it the
// system catalogs), and a run builds ~550 apps: the database under a closed app goes back to a per-process pool,
// emptied to the template's rows, and the next app of the same file takes it. It is reused only when nothing
// else is connected to it and its schema is still the template's (a test that drops or renames something gets
// a dropped database instead); the pool is dropped when the file's tests end.

/** The schema, as a hash: tables, columns, functions, constraints and triggers of `public`. */
const fingerprintQuery = `select md5(concat_ws('|',
  (select string_agg(relname::text || relkind::text, ',' order by relname, relkind) from pg_class where relnamespace = 'public'::regnamespace),
  (select string_agg(attrelid::regclass::text || '.' || attname::text || ':' || atttypid::text || attnotnull::text, ',' order by 1)
     from pg_attribute a join pg_class c on c.oid = a.attrelid
     where c.relnamespace = 'public'::regnamespace and a.attnum > 0 and not a.attisdropped),
  (select string_agg(proname::text || md5(prosrc), ',' order by 1) from pg_proc where pronamespace = 'public'::regnamespace),
  (select string_agg(conname::text || pg_get_constraintdef(oid), ',' order by 1) from pg_constraint where connamespace = 'public'::regnamespace),
  (select string_agg(tgname::text, ',' order by 1) from pg_trigger where not tgisinternal),
  (select string_agg(array_to_string(setconfig, ','), ';' order by 1) from pg_db_role_setting where setdatabase = (select oid from pg_database where datname = current_database()))
)) as fingerprint`

interface Template { fingerprint: string, reset: string }
let template: Promise<Template> | undefined
const idle: string[] = []
let poolClosed = false
let poolTeardown = false

/** What a fresh clone holds (read from one, never from the template: a connection there would block clones). */
async function readTemplate (name: string): Promise<Template> {
  const client = new pg.Client({ connectionString: urlFor(name) })
  await client.connect()
  try {
    const { fingerprint } = (await client.query<{ fingerprint: string }>(fingerprintQuery)).rows[0]!
    const tables = (await client.query<{ name: string }>(
      "select oid::regclass::text as name from pg_class where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') order by 1")).rows
    const statements = ['begin', 'set local session_replication_role = replica']
    for (const { name: table } of tables) statements.push(`delete from ${table}`)
    for (const { name: table } of tables) {
      const { rows } = await client.query<{ rows: unknown[] | null }>(`select json_agg(t) as rows from ${table} t`)
      if (rows[0]!.rows) {
        statements.push(`insert into ${table} overriding system value select * from json_populate_recordset(null::${table}, ${client.escapeLiteral(JSON.stringify(rows[0]!.rows))})`)
      }
    }
    const sequences = (await client.query<{ name: string }>(
      "select oid::regclass::text as name from pg_class where relnamespace = 'public'::regnamespace and relkind = 'S'")).rows
    for (const { name: sequence } of sequences) {
      const { last_value: last, is_called: called } = (await client.query(`select last_value, is_called from ${sequence}`)).rows[0]
      statements.push(`select setval(${client.escapeLiteral(sequence)}, ${Number(last)}, ${called ? 'true' : 'false'})`)
    }
    statements.push('commit')
    return { fingerprint, reset: statements.join(';\n') }
  } finally {
    await client.end()
  }
}

/** Back to the template's rows, when the database can be reused; false when it must be dropped. */
async function reset (name: string): Promise<boolean> {
  const { fingerprint, reset: statements } = await template!
  const client = new pg.Client({ connectionString: urlFor(name) })
  await client.connect()
  try {
    const { rows } = await client.query<{ others: number, fingerprint: string }>(
      "select (select count(*)::int from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend') as others, f.fingerprint from (" + fingerprintQuery + ') f')
    if (rows[0]!.others > 0 || rows[0]!.fingerprint !== fingerprint) return false
    await client.query(statements)
    return true
  } finally {
    await client.end()
  }
}

/**
 * A database for an app of this file: a pooled one emptied to the template's rows, else a new clone. `release()`
 * (once its app is closed) returns it to the pool, or drops it when it cannot be reused.
 */
export async function acquireTestDatabase (): Promise<{ name: string, url: string, release (): Promise<void> }> {
  if (!poolTeardown) {
    poolTeardown = true
    tap.teardown(async () => {
      poolClosed = true
      await Promise.all(idle.splice(0).map(dropDatabase))
    })
  }
  let name = idle.pop()
  if (!name) {
    name = await cloneTemplate()
    template ??= readTemplate(name)
    await template
  }
  const taken = name
  return {
    name: taken,
    url: urlFor(taken),
    async release () {
      const reusable = !poolClosed && await reset(taken).catch(() => false)
      if (reusable && !poolClosed) idle.push(taken)
      else await dropDatabase(taken)
    }
  }
}

/**
 * A database of its own, empty (no template): as `npm run db:migrate` meets a fresh one. Its connections are
 * closed and it is dropped when the test ends.
 */
export async function emptyTestDatabase (t: { teardown (fn: () => unknown): void }, poolMax = 2): Promise<Kysely<DB>> {
  const name = `fractal_test_${Date.now()}_empty${randomBytes(3).toString('hex')}`
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`create database "${name}"`)
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: databaseUrl })
    await c.connect()
    await c.query(`drop database if exists "${name}" with (force)`)
    await c.end()
  })
  const { db } = await createDatabase({ url: urlFor(name), dataDir: '', poolMax })
  t.teardown(() => db.destroy())
  return db
}
