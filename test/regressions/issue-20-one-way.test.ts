// Issue 20: one way per concern. Each concern had its own copy in several places (three cursor codecs, four
// SHA-256-to-id helpers, three to six `$ref` resolvers); each now has one home, and these checks keep it so.
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'

const root = join(import.meta.dirname, '../..')
const production = ['services', 'routes', 'plugins', 'openapi', 'db', 'test', 'bench'].flatMap((dir) =>
  readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name).slice(root.length + 1)))
const matching = (pattern: RegExp) => production.filter((file) => file !== 'test/regressions/issue-20-one-way.test.ts' && pattern.test(readFileSync(join(root, file), 'utf8')))

t.test('one way › cursors › only services/pagination.ts encodes or decodes a cursor', async (t) => {
  t.same(matching(/toString\('base64url'\)[^\n]*cursor|cursor[^\n]*'base64url'|nextCursor:[^\n]*base64url/i).filter((f) => !f.startsWith('test/')), ['services/pagination.ts'])
})

t.test('one way › hashing › only services/hashing.ts turns a secret into its stored SHA-256 id', async (t) => {
  t.same(matching(/createHash\(\s*'sha256'\s*\)[^\n]*digest\(\s*'base64url'\s*\)|\bhash\(\s*'sha256'/).filter((f) => !f.startsWith('test/') && !f.startsWith('bench/')), ['services/hashing.ts'])
})

t.test('one way › $ref › nothing resolves a JSON pointer by hand: openapi/spec.ts (@redocly/openapi-core) does', async (t) => {
  // A hand resolver splits the pointer and walks the document, or unescapes its ~0/~1. The examples check
  // follows one $ref on purpose: its report names the pointer where a shared example lives.
  t.same(matching(/\$ref\??\.(split|slice)\(|ref\.slice\(2\)|replace\(\/~1\/g/), ['test/docs/examples.test.ts'])
})
