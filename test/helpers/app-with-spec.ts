// The app built on a copy of openapi.yaml changed in one place: the app reads the spec from
// openapi/spec.ts's `specPath` and takes no other document, so the copy replaces that module with
// `t.mockImport` (as test/services/accounts/secrets.test.ts does for its module).
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { FastifyInstance } from 'fastify'
import { parse, stringify } from 'yaml'
import { specPath } from '../../openapi/spec.js'
import { testConfig, type Overrides } from './build.js'

export type SpecTest = Parameters<typeof testConfig>[0] & { mockImport: <T>(module: string, mocks: Record<string, unknown>) => Promise<T> }
export type Document = Record<string, any>

/** Builds the whole app on a copy of openapi.yaml that `change` edited; resolves once it is ready. */
export async function appWithSpec (t: SpecTest, change: (document: Document) => void, overrides: Overrides = {}): Promise<FastifyInstance> {
  const document = parse(await readFile(specPath, 'utf8')) as Document
  change(document)
  const dir = await mkdtemp(join(tmpdir(), 'fractal-spec-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  const file = join(dir, 'openapi.yaml')
  await writeFile(file, stringify(document))
  const { buildApp } = await t.mockImport<typeof import('../../app.js')>('../../app.js', { '../../openapi/spec.ts': { specPath: file } })
  const app = await buildApp(await testConfig(t, overrides), { logger: false })
  t.teardown(() => app.close())
  await app.ready()
  return app
}
