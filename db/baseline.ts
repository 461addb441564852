import { existsSync, readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { brotliDecompress } from 'node:zlib'
import { promisify } from 'node:util'

/**
 * The embedded database's baseline: a PGlite data directory with every migration of its time applied (and
 * the SQL functions), as `npm run db:baseline` dumped it (a tar, brotli-compressed; `npm install` runs it). A fresh DATA_DIR starts
 * from it instead of running initdb and the migrations: initdb in WebAssembly is most of a first start
 * (docs/first-hour.md has the figures). The migrations it holds are recorded in it as applied, so
 * migrateToLatest then runs only the later ones, as on any database. It is PGlite's on-disk format, so it
 * is used only with the PGlite version that wrote it; with another, a fresh directory is initialised as before.
 */
// Built on this machine (`npm install` runs `npm run db:baseline`), not committed: 1.6–1.8 MB of PGlite's own
// files, which only the PGlite version that wrote them reads.
export const baselineFiles = {
  archive: fileURLToPath(new URL('../node_modules/.cache/fractal-pglite/baseline.tar.br', import.meta.url)),
  manifest: fileURLToPath(new URL('../node_modules/.cache/fractal-pglite/baseline.json', import.meta.url))
}

export interface BaselineManifest {
  /** The PGlite (npm package) version that wrote the archive. */
  pglite: string
  /** The migrations applied in it, in order. */
  migrations: string[]
}

/** The installed PGlite's version (its package.json is not exported: found beside its entry point). */
export function installedPgliteVersion (): string {
  let dir = dirname(fileURLToPath(import.meta.resolve('@electric-sql/pglite')))
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir)
  return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string }).version
}

export function readBaselineManifest (): BaselineManifest | null {
  if (!existsSync(baselineFiles.manifest) || !existsSync(baselineFiles.archive)) return null
  return JSON.parse(readFileSync(baselineFiles.manifest, 'utf8')) as BaselineManifest
}

/**
 * The baseline as PGlite's `loadDataDir` takes it, or why there is none for this installation (a string):
 * no archive, or one written by another PGlite version.
 */
export async function loadBaseline (): Promise<Blob | string> {
  const manifest = readBaselineManifest()
  if (!manifest) return 'no baseline (npm run db:baseline writes one; npm install runs it)'
  const installed = installedPgliteVersion()
  if (manifest.pglite !== installed) return `the baseline is for PGlite ${manifest.pglite}, this is ${installed} (npm run db:baseline writes a new one)`
  const tar = await promisify(brotliDecompress)(await readFile(baselineFiles.archive))
  return new Blob([tar])
}
