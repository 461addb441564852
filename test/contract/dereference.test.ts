// The one $ref resolver (openapi/spec.ts, on @redocly/openapi-core): what the routes, the generator, the
// breaking-change check and the contract tests read.
import t from 'tap'
import { dereference } from '../../openapi/spec.js'

const doc = (components: Record<string, unknown>, paths: Record<string, unknown> = {}) =>
  ({ openapi: '3.1.0', info: { title: 'x', version: '1.0.0' }, paths, components: { schemas: components } })
const ok = { 200: { description: 'ok', content: { 'application/json': { schema: { $ref: '#/components/schemas/A' } } } } }

t.test('openapi › dereference › inlines every $ref; a sibling such as description is kept and wins', async (t) => {
  const input = doc({ A: { type: 'string', description: 'a' }, B: { $ref: '#/components/schemas/A', description: 'b' } }, { '/a': { get: { responses: ok } } })
  const out = await dereference(input)
  t.same(out.components.schemas.B, { type: 'string', description: 'b' })
  t.same(out.paths['/a'].get.responses[200].content['application/json'].schema, { type: 'string', description: 'a' })
  t.equal((input.components.schemas.B as { $ref: string }).$ref, '#/components/schemas/A', 'the document given is left as it was')
})

t.test('openapi › dereference › a $ref that points nowhere, or back into itself, is refused with a message', async (t) => {
  await t.rejects(dereference(doc({}, { '/a': { get: { responses: ok } } })), /openapi: Can't resolve \$ref/)
  await t.rejects(dereference(doc({ A: { type: 'object', properties: { a: { $ref: '#/components/schemas/A' } } } })), /openapi: recursive \$ref at components\/schemas\/A/)
})
