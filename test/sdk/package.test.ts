// Issue 20: the SDK installs as a normal package. `npm pack` builds it (prepare) into a tarball of dist/ with
// type declarations, the one generated schema among them; installed into an empty folder, its README's first
// example runs against a listening server as an ES module, and a TypeScript consumer type-checks against it.
import { execFile } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { given } from '../helpers/given.js'
import { listening } from './server.js'

// Packing compiles the SDK and installing fetches its two dependencies (from npm's cache when it has them).
t.setTimeout(300_000)

const run = promisify(execFile)
const root = join(import.meta.dirname, '../..')
const sdk = join(root, 'sdk')
// npm's own variables of an `npm test` run (its prefix, its workspace) are not the child's business.
const env = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.toLowerCase().startsWith('npm_')))

const folder = (label: string) => {
  const dir = mkdtempSync(join(tmpdir(), `fractal-sdk-${label}-`))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

const packDir = folder('pack')
const { stdout: packed } = await run('npm', ['pack', '--json', '--pack-destination', packDir], { cwd: sdk, env, maxBuffer: 16 << 20 })
const [pack] = JSON.parse(packed.slice(packed.indexOf('['))) as Array<{ filename: string, files: Array<{ path: string }> }>
const tarball = join(packDir, pack!.filename)

const consumer = folder('app')
writeFileSync(join(consumer, 'package.json'), JSON.stringify({ name: 'sdk-consumer', private: true, type: 'module' }))
await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', tarball], { cwd: consumer, env, maxBuffer: 16 << 20 })

t.test('sdk › package › the tarball holds the build (JavaScript, declarations, the generated schema), no sources', async (t) => {
  const files = pack!.files.map((f) => f.path).sort()
  t.same(files.filter((f) => !f.startsWith('dist/')), ['README.md', 'package.json'])
  for (const file of ['dist/index.js', 'dist/index.d.ts', 'dist/sse.js', 'dist/schema.d.ts', 'dist/operations.js']) t.ok(files.includes(file), file)
  t.equal(readFileSync(join(consumer, 'node_modules/@fractal/sdk/dist/schema.d.ts'), 'utf8'), readFileSync(join(root, 'openapi/schema.d.ts'), 'utf8'),
    'its types are the one generated schema, openapi/schema.d.ts')
})

t.test('sdk › package › the README\'s example runs from the installed tarball against a listening server', async (t) => {
  const { app, baseUrl } = await listening(t)
  const offer = await given(app).offer()
  const user = await given(app).user({ name: 'Ada Lovelace' })
  const readme = readFileSync(join(sdk, 'README.md'), 'utf8')
  const example = readme.slice(readme.indexOf('## Install')).match(/```js\n([\s\S]*?)```/)![1]!
  writeFileSync(join(consumer, 'status.mjs'), example)

  const { stdout } = await run(process.execPath, ['status.mjs'], {
    cwd: consumer,
    env: { ...env, FRACTAL_URL: baseUrl, FRACTAL_EMAIL: user.email, FRACTAL_PASSWORD: user.password }
  })

  t.match(stdout, /^service: (ok|degraded|maintenance)$/m)
  t.match(stdout, new RegExp(`^app ${offer.app}: `, 'm'), 'the catalog, paginated')
  t.match(stdout, new RegExp(`^signed in as Ada Lovelace <${user.email.replace(/[.+]/g, '\\$&')}>$`, 'm'))
})

t.test('sdk › package › a TypeScript consumer type-checks against the installed declarations (exports, types)', async (t) => {
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, lib: ['ES2023', 'DOM'], types: [] },
    files: ['check.ts']
  }))
  writeFileSync(join(consumer, 'check.ts'), `import { createFractalClient, unwrap, FractalProblemError, type components } from '@fractal/sdk'
const fractal = createFractalClient({ baseUrl: 'http://127.0.0.1:1' })
export async function regions (): Promise<Array<components['schemas']['Region']>> {
  return unwrap(await fractal.GET('/v1/regions')).items
}
export const isProblem = (err: unknown) => err instanceof FractalProblemError && err.code === 'not_found'
// @ts-expect-error a path the API does not have
export const nowhere = () => fractal.GET('/v1/nowhere')
`)
  const tsc = join(root, 'node_modules/typescript/bin/tsc')
  const checked = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: consumer, env }).then(() => 'clean', (err: { stdout: string }) => err.stdout)
  t.equal(checked, 'clean', 'no type errors (and the expected one is there)')
})
