// npm run build (and `prepare`, so `npm pack` and an install from a folder or git build it): src/ → dist/ with
// tsc, JavaScript and type declarations; then dist/schema.d.ts becomes the one generated schema itself,
// openapi/schema.d.ts (src/schema.ts only re-exports it from the repository, a path the package cannot hold).
import { execFileSync } from 'node:child_process'
import { copyFileSync, existsSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'

const here = (path) => fileURLToPath(new URL(path, import.meta.url))
const schema = here('../openapi/schema.d.ts')
if (!existsSync(schema)) throw new Error(`sdk build: ${schema} is missing (run npm run generate at the repository root)`)

rmSync(here('./dist'), { recursive: true, force: true })
// TypeScript from this package's devDependencies, or the repository's.
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc')
execFileSync(process.execPath, [tsc, '-p', here('./tsconfig.json')], { stdio: 'inherit' })
copyFileSync(schema, here('./dist/schema.d.ts'))
