import { fileURLToPath } from 'node:url'
import { bundle, createConfig, Source, type Config } from '@redocly/openapi-core'

/** Where the contract lives (next to this file, in the source tree and in dist/). */
export const specPath = fileURLToPath(new URL('./openapi.yaml', import.meta.url))

export type Document = Record<string, any>

// The one `$ref` resolver of the code base is @redocly/openapi-core's bundler (the linter's own): it reads the
// contract (and any file it refers to, should the spec be split), and inlines `$ref`s when asked to dereference.
let config: Promise<Config> | undefined
const redoclyConfig = () => (config ??= createConfig({}))

/** A $ref that points back into itself would make an endless document: refuse it with its name. */
function refuseCycles (node: unknown, path: string[] = [], ancestors = new Set<object>()): void {
  if (node === null || typeof node !== 'object') return
  if (ancestors.has(node)) throw new Error(`openapi: recursive $ref at ${path.join('/')}`)
  ancestors.add(node)
  for (const [key, value] of Object.entries(node)) refuseCycles(value, [...path, key], ancestors)
  ancestors.delete(node)
}

async function bundled (input: { path: string } | { document: Document }, dereference: boolean): Promise<Document> {
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
