import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import { Kysely, PostgresDialect } from './kysely.js'
import pg from 'pg'
import { CommittedWrites } from './committed-writes.js'
import type { DB } from './types.js'

export type Database = Kysely<DB>

export interface DatabaseOptions {
  /** postgres:// URL; null selects PGlite in `dataDir/pglite`. */
  url: string | null
  dataDir: string
  poolMax: number
  /** PostgreSQL cancels a statement running longer (0: never); migrations run without it. */
  statementTimeoutMs?: number
  /** Keep PGlite in memory instead of on disk (tests of the embedded mode). */
  inMemory?: boolean
  /**
   * A fresh PGlite directory starts from the migrated baseline (db/baseline.ts) instead of an empty
   * database: pass it only where the migrations would run next anyway (DATABASE_AUTO_MIGRATE).
   */
  baseline?: boolean
}

/** How an embedded database started: its directory existed, or it was made from the baseline or by initdb (and why). */
export type PgliteStart = { from: 'existing' } | { from: 'baseline' } | { from: 'initdb', reason: string }

// int8 (counts, sums) as numbers: our counts stay far below 2^53. numeric stays a string.
pg.types.setTypeParser(pg.types.builtins.INT8, (value) => Number.parseInt(value, 10))

/**
 * Opens the database: a pg Pool when a URL is given, embedded PGlite otherwise. `writes` tells who listens
 * which rows of a table were updated, once committed (see CommittedWrites).
 */
export async function createDatabase (options: DatabaseOptions): Promise<{ db: Database, kind: 'postgres' | 'pglite', writes: CommittedWrites, started?: PgliteStart }> {
  const writes = new CommittedWrites()
  if (options.url) {
    const pool = new pg.Pool({
      connectionString: options.url,
      max: options.poolMax,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30000,
      // A statement stuck on a lock or a hung server fails (57014, a 503) instead of holding the request
      // and its connection until the client gives up.
      ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {})
    })
    // A client losing its server (PostgreSQL restarting) must not crash the process: the pool listens on
    // idle clients only, and a checked-out client between two queries (inside a transaction) emits 'error'
    // with no listener. Its next query fails instead (a 503), and the pool drops it on release.
    pool.on('error', () => {})
    pool.on('connect', (client) => { client.on('error', () => {}) })
    return { db: new Kysely<DB>({ dialect: writes.wrap(new PostgresDialect({ pool })) }), kind: 'postgres', writes }
  }
  const { PGlite } = await import('@electric-sql/pglite')
  const { PGlitePool } = await import('./pglite-pool.js')
  let dataDir: string | undefined
  let release = async () => {}
  if (!options.inMemory) {
    dataDir = join(options.dataDir, 'pglite')
    await mkdir(dataDir, { recursive: true })
    const { lockDataDir } = await import('./data-dir-lock.js')
    release = await lockDataDir(dataDir)
  }
  let started: PgliteStart = { from: 'existing' }
  let loadDataDir: Blob | undefined
  if (dataDir === undefined || !existsSync(join(dataDir, 'PG_VERSION'))) {
    const { loadBaseline } = await import('./baseline.js')
    const baseline = options.baseline ? await loadBaseline() : 'DATABASE_AUTO_MIGRATE is off'
    if (typeof baseline === 'string') started = { from: 'initdb', reason: baseline }
    else [started, loadDataDir] = [{ from: 'baseline' }, baseline]
  }
  let pglite
  try {
    pglite = await PGlite.create(dataDir, loadDataDir ? { loadDataDir } : {})
  } catch (err) {
    await release()
    throw err
  }
  const pool = new PGlitePool(pglite, release)
  return { db: new Kysely<DB>({ dialect: writes.wrap(new PostgresDialect({ pool: pool as unknown as pg.Pool })) }), kind: 'pglite', writes, started }
}
