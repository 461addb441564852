import { createHash, randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { Config } from '@redocly/openapi-core'

/** Where the contract lives (next to this file, in the source tree and in dist/). */
export const specPath = fileURLToPath(new URL('./openapi.yaml', import.meta.url))

export type Document = Record<string, any>

// The one `$ref` resolver of the code base is @redocly/openapi-core's bundler (the linter's own): it reads the
// contract (and any file it refers to, should the spec be split), and inlines `$ref`s when asked to dereference.
// It is loaded when a document is bundled, not before: about 300 modules, most of a process's start when the
// contract comes from the cache below.
let redocly: Promise<typeof import('@redocly/openapi-core')> | undefined
const openapiCore = () => (redocly ??= import('@redocly/openapi-core'))
let config: Promise<Config> | undefined
const redoclyConfig = () => (config ??= openapiCore().then((core) => core.createConfig({})))

/** A $ref that points back into itself would make an endless document: refuse it with its name. */
function refuseCycles (node: unknown, path: string[] = [], ancestors = new Set<object>()): void {
  if (node === null || typeof node !== 'object') return
  if (ancestors.has(node)) throw new Error(`openapi: recursive $ref at ${path.join('/')}`)
  ancestors.add(node)
  for (const [key, value] of Object.entries(node)) refuseCycles(value, [...path, key], ancestors)
  ancestors.delete(node)
}

async function bundled (input: { path: string } | { document: Document }, dereference: boolean): Promise<Document> {
  const { bundle, Source } = await openapiCore()
  const result = await bundle({
    config: await redoclyConfig(),
    dereference,
    ...('path' in input
      ? { ref: input.path }
      // In memory (a document being compared): bundled as it is; the bundler changes what it is given.
      : { doc: { source: new Source('document.json', JSON.stringify(input.document)), parsed: structuredClone(input.document) } })
  })
  const unresolved = result.problems.filter((p) => p.severity === 'error')
  if (unresolved.length > 0) throw new Error(`openapi: ${unresolved.map((p) => p.message).join('; ')}`)
  const document = result.bundle.parsed as Document
  if (dereference) refuseCycles(document)
  return document
}

/** The contract as written, one document (its own `$ref`s kept): what /openapi.json serves. */
export function readSpec (path = specPath): Promise<Document> {
  return bundled({ path }, false)
}

/**
 * A document with every `$ref` inlined (siblings such as `description` kept, and winning), as the routes,
 * the generator and the contract checks read it. Parts inlined from one component may be shared objects.
 */
export function dereference (document: Document): Promise<Document> {
  return bundled({ document }, true)
}

/** The contract file (and the files it refers to), dereferenced. */
export function readDereferencedSpec (path = specPath): Promise<Document> {
  return bundled({ path }, true)
}

export interface Contract {
  /** As written (its own `$ref`s kept). */
  document: Document
  /** Every `$ref` inlined. */
  dereferenced: Document
}

/** The YAML and JSON files of the contract's folder and below, sorted: what a split contract refers to. */
async function contractFiles (folder: string): Promise<string[]> {
  const entries = await readdir(folder, { withFileTypes: true, recursive: true })
  return entries.filter((e) => e.isFile() && /\.(ya?ml|json)$/.test(e.name)).map((e) => join(e.parentPath, e.name)).sort()
}

/**
 * readSpec and its dereferenced form, from a cache on disk when the contract has not changed:
 * `node_modules/.cache/fractal-openapi/<key>.json`, the key a SHA-256 of the contract folder's files and of the
 * bundler's version. Bundling costs a process about a second and 300 modules; reading the cached JSON costs
 * milliseconds (every test file, and every start of the server, is a process). A cache that cannot be written
 * (a read-only image) only means bundling each time.
 */
export async function readContract (path = specPath): Promise<Contract> {
  const hash = createHash('sha256').update(`contract-cache-1\0${redoclyVersion()}\0${path}\0`)
  for (const file of await contractFiles(dirname(path))) hash.update(`${file}\0`).update(await readFile(file)).update('\0')
  const folder = join(process.cwd(), 'node_modules', '.cache', 'fractal-openapi')
  const cached = join(folder, `${hash.digest('hex').slice(0, 32)}.json`)
  const hit = await readFile(cached, 'utf8').then((text) => JSON.parse(text) as Contract, () => undefined)
  if (hit) return hit
  const document = await readSpec(path)
  const contract = { document, dereferenced: await dereference(document) }
  // Written whole, then renamed: processes that start together never read half a file.
  const partial = `${cached}.${randomBytes(6).toString('hex')}`
  await mkdir(folder, { recursive: true })
    .then(() => writeFile(partial, JSON.stringify(contract)))
    .then(() => rename(partial, cached))
    .catch(() => undefined)
  return contract
}

function redoclyVersion (): string {
  try {
    return (createRequire(import.meta.url)('@redocly/openapi-core/package.json') as { version: string }).version
  } catch {
    return 'unknown'
  }
}
