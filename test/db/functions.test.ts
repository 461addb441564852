// Issue 20: a SQL function has one source, db/functions/<name>.sql, applied after the migrations by
// db/functions.ts (create or replace, recorded by hash); before, fractal_assign_container was restated in full
// in three migrations and one migration's `down` rebuilt it by string replacement. And the SQLSTATEs those
// functions raise map to problems in one table, services/sql-errors.ts, checked here against the SQL files.
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from '../../db/kysely.js'
import t, { type Test } from 'tap'
import { createDatabase } from '../../db/database.js'
import { applyFunctions, functionFiles, functionsFolder, pendingFunctions } from '../../db/functions.js'
import { migrateToLatest, pendingMigrations } from '../../db/migrator.js'
import { sqlErrors } from '../../services/sql-errors.js'
import { createTestDatabase, emptyTestDatabase } from '../helpers/database.js'

const migrationsFolder = join(import.meta.dirname, '../../db/migrations')
const files = functionFiles()

/** A database of its own, empty (no template): as `npm run db:migrate` meets a fresh one. */
const emptyDatabase = (t: Test) => emptyTestDatabase(t, 4)

/** A clone of the test template: a database migrated, its functions applied. */
async function migratedDatabase (t: Test, poolMax: number) {
  const database = await createTestDatabase()
  t.teardown(() => database.drop())
  const { db } = await createDatabase({ url: database.url, dataDir: '', poolMax })
  t.teardown(() => db.destroy())
  return db
}

/** A copy of db/functions to change in a test. */
function functionsCopy (t: Test) {
  const folder = mkdtempSync(join(tmpdir(), 'fractal-functions-'))
  cpSync(functionsFolder, folder, { recursive: true })
  t.teardown(() => rmSync(folder, { recursive: true, force: true }))
  return folder
}

/** The body PostgreSQL holds for a function (between the $$ of its definition). */
const bodyOf = (text: string) => text.slice(text.indexOf('$$') + 2, text.lastIndexOf('$$'))

t.test('sql functions › one source › each db/functions/<name>.sql creates or replaces exactly the function <name>', async (t) => {
  t.ok(files.length >= 4)
  for (const file of files) {
    const creates = [...file.text.matchAll(/create\s+(?:or\s+replace\s+)?function\s+(\w+)\s*\(/gi)].map((m) => m[1])
    t.same(creates, [file.name], `${file.name}.sql`)
    t.match(file.text, new RegExp(`create or replace function ${file.name}\\(`), `${file.name}.sql: create or replace (it is applied again when it changes)`)
  }
})

t.test('sql functions › one source › no migration states the body of a function that lives in db/functions', async (t) => {
  const restating = readdirSync(migrationsFolder).flatMap((migration) => {
    const text = readFileSync(join(migrationsFolder, migration), 'utf8')
    return files.filter((file) => new RegExp(`create\\s+(or\\s+replace\\s+)?function\\s+${file.name}\\s*\\(`, 'i').test(text)).map((file) => `${migration}: ${file.name}`)
  })
  t.same(restating, [])
})

t.test('sql functions › fresh database › the migrations then the files make every function, as the files say; a second run applies nothing', async (t) => {
  const db = await emptyDatabase(t)
  const lines: string[] = []

  const result = await migrateToLatest(db, (line) => lines.push(line))

  t.same(result.functions, files.map((f) => f.name), 'every file, in name order')
  t.same(lines.filter((l) => l.startsWith('function ')), files.map((f) => `function ${f.name}: applied`))
  const { rows } = await sql<{ proname: string, prosrc: string }>`select proname, prosrc from pg_proc where proname = any(${files.map((f) => f.name)}::text[])`.execute(db)
  for (const file of files) {
    const held = rows.filter((r) => r.proname === file.name)
    t.equal(held.length, 1, `one ${file.name} (no stale overload)`)
    t.equal(held[0]?.prosrc, bodyOf(file.text), `${file.name}: the body of its file`)
  }
  t.same(await pendingMigrations(db), [], 'nothing pending')
  t.same((await migrateToLatest(db)).functions, [], 'unchanged files are not applied again')
})

t.test('sql functions › existing database › one the migrations alone made (before db/functions) gets every file applied over its functions', async (t) => {
  const db = await migratedDatabase(t, 4)
  // As the code before db/functions left a database: the functions made by migrations, no record of files.
  await sql`drop table sql_function`.execute(db)

  t.same(await pendingMigrations(db), files.map((f) => `function ${f.name}`), 'each function is pending')
  t.same((await migrateToLatest(db)).functions, files.map((f) => f.name), 'create or replace over each')
  const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_proc where proname = any(${files.map((f) => f.name)}::text[])`.execute(db)
  t.equal(rows[0]!.n, files.length, 'no overload left beside them')
})

t.test('sql functions › existing database › a changed file is applied again, the others are not; pending until then', async (t) => {
  const db = await migratedDatabase(t, 4)
  const folder = functionsCopy(t)
  const path = join(folder, 'fractal_entitlement.sql')
  writeFileSync(path, readFileSync(path, 'utf8').replace("detail = 'no account'", "detail = 'no such account'"))

  t.same(await pendingFunctions(db, folder), ['fractal_entitlement'])
  const lines: string[] = []
  t.same(await applyFunctions(db, (line) => lines.push(line), folder), ['fractal_entitlement'])
  t.same(lines, ['function fractal_entitlement: applied'])
  const raised = await sql`select fractal_entitlement(gen_random_uuid(), '{"trialDays": 1, "trialContainers": 1, "graceDays": 1}'::jsonb)`.execute(db).catch((e: unknown) => e)
  t.match(raised, { code: 'FR008', detail: 'no such account' }, 'the new body runs')
  t.same(await pendingFunctions(db, folder), [])
  t.same(await applyFunctions(db, () => {}, folder), [])
})

t.test('sql functions › existing database › a function dropped behind the record\'s back (a down) is made again', async (t) => {
  const db = await migratedDatabase(t, 4)
  await sql`drop function fractal_assign_containers(jsonb)`.execute(db)

  t.same(await pendingMigrations(db), ['function fractal_assign_containers'])
  t.same((await migrateToLatest(db)).functions, ['fractal_assign_containers'])
  t.same(await pendingMigrations(db), [])
})

t.test('sql functions › race › appliers running at once (replicas migrating on start) apply each change once, all succeed', async (t) => {
  const db = await migratedDatabase(t, 8)
  const folder = functionsCopy(t)
  for (const name of ['fractal_entitlement', 'fractal_create_container']) {
    const path = join(folder, `${name}.sql`)
    writeFileSync(path, `-- changed\n${readFileSync(path, 'utf8')}`)
  }

  const outcomes = await Promise.all(Array.from({ length: 6 }, () => applyFunctions(db, () => {}, folder)))

  t.same(outcomes.flat().sort(), ['fractal_create_container', 'fractal_entitlement'], 'each changed file applied by exactly one of them')
  t.same(await pendingFunctions(db, folder), [])
})

t.test('sql errors › one table › every SQLSTATE a function raises maps to a problem, and every mapped one is raised', async (t) => {
  const raised = new Set(files.flatMap((f) => [...f.text.matchAll(/errcode\s*=\s*'([0-9A-Z]{5})'/g)].map((m) => m[1]!)))
  t.same([...raised].sort(), Object.keys(sqlErrors).sort())
  for (const [code, make] of Object.entries(sqlErrors)) {
    const err = make({ code, message: 'm', detail: '1' }, { app: 'chrome', region: 'eu-west-1', appUrl: 'https://app.example' }) as Error & { code?: string }
    t.ok(typeof err.code === 'string' && err.code !== code, `${code} becomes a domain error with a problem code (${err.code})`)
  }
})
