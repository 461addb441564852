// House rules of the spec, checked over the whole contract. Its lint (redocly), the freshness of the generated
// files and the type-check are `npm run lint`, a step of its own in .ci/run.
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import fastJsonStringify from 'fast-json-stringify'
import { parse } from 'yaml'
import { sharedAjv } from '../../plugins/openapi-routes.js'
import { fileApp } from '../helpers/build.js'
import { readDereferencedSpec } from '../../openapi/spec.js'

const root = new URL('../..', import.meta.url).pathname
// Dereferenced as the app reads it (openapi/spec.ts).
const spec = await readDereferencedSpec(join(root, 'openapi/openapi.yaml'))
const methods = ['get', 'put', 'post', 'patch', 'delete']
const operations = Object.entries<Record<string, any>>(spec.paths).flatMap(([path, item]) =>
  methods.filter((m) => item[m]).map((m) => ({ path, method: m, op: item[m] })))

t.test('spec › every operation has an operationId, one tag, a summary, and problem+json errors', async (t) => {
  for (const { path, method, op } of operations) {
    const name = `${method.toUpperCase()} ${path}`
    t.match(op.operationId, /^[a-z][A-Za-z]+$/, `${name} operationId is lowerCamel`)
    t.equal(op.tags?.length, 1, `${name} has one tag`)
    t.ok(op.summary, `${name} has a summary`)
    for (const [status, response] of Object.entries(op.responses)) {
      if (Number(status) >= 400) t.ok((response as any).content?.['application/problem+json'], `${name} ${status} is problem+json`)
    }
  }
})

t.test('spec › secured operations declare 401 (and 403 when scopes apply), and are never edge-cached', async (t) => {
  for (const { path, method, op } of operations) {
    const requirements: Array<Record<string, string[]>> = op.security ?? spec.security ?? []
    const secured = requirements.some((r) => Object.keys(r).length > 0)
    if (!secured) continue
    const name = `${method.toUpperCase()} ${path}`
    t.ok(op.responses['401'], `${name} documents 401`)
    // A credential without scopes (a host's or a container's own secret) is valid or not: no 403 to answer.
    const scoped = requirements.some((r) => Object.values(r).some((scopes) => scopes.length > 0))
    if (scoped) t.ok(op.responses['403'], `${name} documents 403`)
    t.notOk(op['x-cache'], `${name} has no x-cache`)
    for (const [scheme] of Object.entries(op.security[0])) t.ok(spec.components.securitySchemes[scheme], `${name} uses a declared scheme`)
  }
})

// Issue 18, item 14: Node and Fastify answer some statuses before an operation runs; each must be declared
// where it can happen (test/regressions/issue-18-undeclared-statuses.test.ts sends them).
t.test('spec › every operation declares what Node and Fastify answer before it runs', async (t) => {
  const expected = (path: string, method: string) => [
    // Any request: a request line over Node's header limit (414), headers over it (431), too slow (408).
    ['408', 'RequestTimeout'], ['414', 'UriTooLong'], ['431', 'RequestHeaderFieldsTooLarge'],
    // A path parameter: malformed percent-encoding (400; an over-long one is the 414 above).
    ...(path.includes('{') ? [['400']] : []),
    // Fastify reads a body on these methods whether or not the operation takes one.
    ...(method === 'get' ? [] : [['400'], ['413', 'PayloadTooLarge'], ['415', 'UnsupportedMediaType']])
  ]
  // As written: through the shared responses (their $refs).
  const written = parse(readFileSync(join(root, 'openapi/openapi.yaml'), 'utf8'))
  for (const { path, method } of operations) {
    const op = written.paths[path][method]
    const missing = expected(path, method).filter(([status, component]) =>
      !op.responses[status!] || (component !== undefined && op.responses[status!].$ref !== `#/components/responses/${component}`))
    t.same(missing.map(([status]) => status), [], `${method.toUpperCase()} ${path} (${op.operationId}) declares them through the shared responses`)
  }
})

t.test('spec › inputs refuse unknown properties (no mass assignment)', async (t) => {
  for (const { path, method, op } of operations) {
    const schema = op.requestBody?.content?.['application/json']?.schema
    // A raw body (Stripe's signed webhook) is bytes, not an object of ours.
    if (!schema || schema.format === 'binary') continue
    const branches = schema.oneOf ?? [schema]
    for (const branch of branches) t.equal(branch.additionalProperties, false, `${method.toUpperCase()} ${path} body`)
  }
})

// Issue 21: validators and serialisers compile when a route first needs them (plugins/openapi-routes.ts), so
// a schema Ajv or fast-json-stringify cannot compile would only fail its first request. Each is compiled here.
t.test('spec › every request schema compiles with Ajv and every JSON response schema with fast-json-stringify', async (t) => {
  const app = await fileApp()
  const bodyAjv = sharedAjv(false)
  const paramsAjv = sharedAjv('array')
  let compiled = 0
  for (const op of app.openapi.operations.values()) {
    const schema = op.schema as Record<string, any>
    for (const part of ['params', 'querystring', 'headers'] as const) {
      if (schema[part]) { paramsAjv.ajv.compile(schema[part]); compiled++ }
    }
    for (const content of Object.values<any>(schema.body?.content ?? {})) { bodyAjv.ajv.compile(content.schema); compiled++ }
    for (const response of Object.values<any>(schema.response ?? {})) {
      for (const content of Object.values<any>(response.content ?? {})) {
        fastJsonStringify(content.schema)
        bodyAjv.ajv.compile(content.schema)
        compiled += 2
      }
    }
  }
  t.ok(compiled > app.openapi.operations.size * 3, `${compiled} schemas compiled`)
})
