import { promises as fs } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { FileMigrationProvider, Migrator, sql, type Kysely, type MigrationResultSet } from 'kysely'

const migrationFolder = fileURLToPath(new URL('./migrations', import.meta.url))

export function createMigrator (db: Kysely<any>): Migrator {
  return new Migrator({
    db,
    provider: new FileMigrationProvider({ fs, path, migrationFolder }),
    migrationTableName: 'kysely_migration',
    migrationLockTableName: 'kysely_migration_lock'
  })
}

/**
 * Migrates to the latest version; calls `report` once per migration run; throws on failure. Migrations run on
 * one connection without DATABASE_STATEMENT_TIMEOUT_MS (a migration may take longer than any request).
 */
export async function migrateToLatest (db: Kysely<any>, report: (line: string) => void = () => {}): Promise<MigrationResultSet> {
  const result = await db.connection().execute(async (connection) => {
    await sql`set statement_timeout = 0`.execute(connection)
    try {
      return await createMigrator(connection).migrateToLatest()
    } finally {
      await sql`reset statement_timeout`.execute(connection)
    }
  })
  for (const r of result.results ?? []) {
    report(`migration ${r.migrationName}: ${r.status === 'Success' ? 'applied' : r.status.toLowerCase()}`)
  }
  if (result.error) {
    throw new Error(`migration failed: ${(result.error as Error).message ?? String(result.error)}`, { cause: result.error })
  }
  return result
}
