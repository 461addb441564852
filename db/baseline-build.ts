// npm run db:baseline: writes node_modules/.cache/fractal-pglite/baseline.tar.br (+ .json), the migrated data
// directory a fresh embedded database starts from (db/baseline.ts). `npm install` runs it with --if-missing
// (postinstall): nothing to do when a baseline of this PGlite holds every migration of db/migrations; it is
// rebuilt after adding migrations (a fresh start then runs fewer of them) or upgrading @electric-sql/pglite.
import { readdirSync } from 'node:fs'
import { mkdir, writeFile } from 'node:fs/promises'
import { dirname } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { brotliCompress, constants } from 'node:zlib'
import { PGlite } from '@electric-sql/pglite'
import { Kysely, PostgresDialect } from './kysely.js'
import { baselineFiles, installedPgliteVersion, readBaselineManifest, type BaselineManifest } from './baseline.js'
import { migrateToLatest } from './migrator.js'
import { PGlitePool } from './pglite-pool.js'

if (process.argv.includes('--if-missing')) {
  const manifest = readBaselineManifest()
  const migrations = readdirSync(fileURLToPath(new URL('./migrations', import.meta.url))).filter((f) => /\.(ts|js)$/.test(f)).map((f) => f.replace(/\.(ts|js)$/, '')).sort()
  if (manifest?.pglite === installedPgliteVersion() && migrations.every((m) => manifest.migrations.includes(m))) {
    console.log(`baseline: up to date (${baselineFiles.archive})`)
    process.exit(0)
  }
}

const pglite = await PGlite.create()
const db = new Kysely<any>({ dialect: new PostgresDialect({ pool: new PGlitePool(pglite) as never }) })
const result = await migrateToLatest(db)
const { rows } = await pglite.query<{ name: string }>('select name from kysely_migration order by name')
// Everything on disk, nothing in the WAL to replay at the first start.
await pglite.query('checkpoint')
const tar = Buffer.from(await (await pglite.dumpDataDir('none')).arrayBuffer())
await db.destroy()
const archive = await promisify(brotliCompress)(tar, {
  params: { [constants.BROTLI_PARAM_QUALITY]: 9, [constants.BROTLI_PARAM_LGWIN]: 24, [constants.BROTLI_PARAM_SIZE_HINT]: tar.length }
})
const manifest: BaselineManifest = { pglite: installedPgliteVersion(), migrations: rows.map((r) => r.name) }
await mkdir(dirname(baselineFiles.archive), { recursive: true })
await writeFile(baselineFiles.archive, archive)
await writeFile(baselineFiles.manifest, `${JSON.stringify(manifest, null, 2)}\n`)
console.log(`baseline: ${manifest.migrations.length} migrations and ${result.functions.length} functions, PGlite ${manifest.pglite}; ` +
  `${(tar.length / 1e6).toFixed(1)} MB as a tar, ${(archive.length / 1e6).toFixed(1)} MB in ${baselineFiles.archive}`)
