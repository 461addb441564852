// npm run test:coverage-plan: per operation of the spec, which of the four test categories of
// TESTING.md have tests (found by name: `operationId › category › behaviour`). Exits 1 when an
// operation has no valid-request test.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { operationTags } from '../openapi/operations.js'

const root = fileURLToPath(new URL('.', import.meta.url))
const categories = ['valid', 'insufficient permissions', 'invalid input', 'non-existing'] as const

function files (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? files(path) : path.endsWith('.test.ts') ? [path] : []
  })
}

const names = files(root).flatMap((file) => [...readFileSync(file, 'utf8').matchAll(/t\.test\(\s*[`'"]([^`'"]+)[`'"]/g)].map((m) => m[1]!))
const found = new Map<string, Set<string>>()
for (const name of names) {
  const [operationId, category] = name.split(' › ')
  if (!operationId || !category) continue
  const set = found.get(operationId) ?? new Set()
  set.add(category)
  found.set(operationId, set)
}

// Which categories apply to an operation, from the spec: permissions only behind `security`, invalid input
// only with parameters or a body, non-existing only where a 404 is declared.
const spec = parse(readFileSync(join(root, '../openapi/openapi.yaml'), 'utf8'))
const applies = new Map<string, Set<string>>()
for (const item of Object.values<Record<string, any>>(spec.paths)) {
  for (const op of Object.values<any>(item)) {
    if (!op?.operationId) continue
    const set = new Set<string>(['valid'])
    if ((op.security ?? spec.security ?? []).some((r: object) => Object.keys(r).length > 0)) set.add('insufficient permissions')
    if ((op.parameters ?? []).length > 0 || op.requestBody) set.add('invalid input')
    if (op.responses?.['404']) set.add('non-existing')
    applies.set(op.operationId, set)
  }
}

let missingValid = 0
let gaps = 0
console.log(['operation', 'tag', ...categories].join(' | '))
for (const [operationId, tag] of Object.entries(operationTags).sort()) {
  const have = found.get(operationId) ?? new Set()
  if (!have.has('valid')) missingValid++
  const cells = categories.map((c) => {
    if (have.has(c)) return 'yes'
    if (!applies.get(operationId)?.has(c)) return 'n/a'
    gaps++
    return 'MISSING'
  })
  console.log([operationId, tag, ...cells].join(' | '))
}
console.log(`\n${gaps} applicable categor${gaps === 1 ? 'y' : 'ies'} without a test`)
if (missingValid > 0) {
  console.error(`${missingValid} operation(s) without a valid-request test`)
  process.exitCode = 1
}
