import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Kysely, MigrationProvider, MigrationResultSet } from 'kysely'
import { FileMigrationProvider, Migrator, sql } from './kysely.js'
import { applyFunctions, pendingFunctions } from './functions.js'

const migrationFolder = fileURLToPath(new URL('./migrations', import.meta.url))

export function createMigrator (db: Kysely<any>, provider: MigrationProvider = new FileMigrationProvider({ fs, path, migrationFolder })): Migrator {
  return new Migrator({
    db,
    provider,
    migrationTableName: 'kysely_migration',
    migrationLockTableName: 'kysely_migration_lock'
  })
}

/**
 * Migrates to the latest version, then applies the SQL functions whose file changed (db/functions.ts); calls
 * `report` once per migration run and per function applied; throws on failure. Both run on one connection
 * without DATABASE_STATEMENT_TIMEOUT_MS (a migration may take longer than any request).
 */
export async function migrateToLatest (db: Kysely<any>, report: (line: string) => void = () => {}): Promise<MigrationResultSet & { functions: string[] }> {
  return db.connection().execute(async (connection) => {
    await sql`set statement_timeout = 0`.execute(connection)
    try {
      // Nothing pending (every start but the first after a deploy): the files are not even imported. A
      // database with migrations this code does not have goes to the migrator, which refuses it.
      const known = await createMigrator(connection, namesOnly).getMigrations()
      const upToDate = known.every((m) => m.executedAt !== undefined) &&
        (await sql<{ n: number }>`select count(*)::int as n from kysely_migration`.execute(connection)).rows[0]?.n === known.length
      const result: MigrationResultSet = upToDate ? { results: [] } : await createMigrator(connection).migrateToLatest()
      for (const r of result.results ?? []) {
        report(`migration ${r.migrationName}: ${r.status === 'Success' ? 'applied' : r.status.toLowerCase()}`)
      }
      if (result.error) {
        throw new Error(`migration failed: ${(result.error as Error).message ?? String(result.error)}`, { cause: result.error })
      }
      return { ...result, functions: await applyFunctions(connection, report) }
    } finally {
      await sql`reset statement_timeout`.execute(connection)
    }
  })
}

// The files FileMigrationProvider takes for migrations (it also requires an `up` export, which all of ours have).
const migrationFile = /^(?!.*\.d\.m?ts$).+\.m?[jt]s$/

/**
 * The names FileMigrationProvider finds, without importing the files (compiling them all costs a start-up
 * half a second under tsx): enough for Migrator.getMigrations to say which are applied. Never run.
 */
const namesOnly: MigrationProvider = {
  async getMigrations () {
    const files = (await fs.readdir(migrationFolder)).filter((file) => migrationFile.test(file))
    return Object.fromEntries(files.map((file) => [file.slice(0, file.lastIndexOf('.')), { up: async () => { throw new Error('names only') } }]))
  }
}

/**
 * The migrations this code has that the database has not applied (every one of them before the first run),
 * then the SQL functions it does not have as this code's files say (`function <name>`).
 */
export async function pendingMigrations (db: Kysely<any>): Promise<string[]> {
  const migrations = await createMigrator(db, namesOnly).getMigrations()
  const functions = await pendingFunctions(db)
  return [...migrations.filter((m) => m.executedAt === undefined).map((m) => m.name), ...functions.map((name) => `function ${name}`)]
}
