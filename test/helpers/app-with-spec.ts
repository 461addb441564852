// The app built on a copy of openapi.yaml changed in one place (buildApp's `specPath`), to show what
// start-up and the routes make of a spec extension.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { parse } from 'yaml'
import { specPath } from '../../openapi/spec.js'
import { build, type Overrides, type testConfig } from './build.js'

export type SpecTest = Parameters<typeof testConfig>[0]
export type Document = Record<string, any>

let shipped: Promise<Document> | undefined

/** Builds the whole app on a copy of openapi.yaml that `change` edited; resolves once it is ready. */
export async function appWithSpec (t: SpecTest, change: (document: Document) => void, overrides: Overrides = {}): Promise<FastifyInstance> {
  shipped ??= readFile(specPath, 'utf8').then((text) => parse(text) as Document)
  const document = structuredClone(await shipped)
  change(document)
  const dir = await mkdtemp(join(tmpdir(), 'fractal-spec-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'openapi.yaml')
  // JSON is YAML too, and far cheaper to write and read back than YAML's block style.
  await writeFile(file, JSON.stringify(document))
  return build(t, overrides, { specPath: file })
}
