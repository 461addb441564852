// OWASP API9 (improper inventory management): every route Fastify has registered is an operation of the spec,
// or one of the listed routes outside it (the published documents, CORS preflight, the queue dashboard),
// each with its reason; an undocumented route (a debug endpoint, a forgotten handler) fails this test. And
// every operation of the spec is registered (the reverse: start-up refuses it, test/contract/startup.test.ts).
import t from 'tap'
import { build } from '../helpers/build.js'
import { operations } from './spec-walk.js'

/** Routes outside the spec, by path pattern (the router's spelling), each for a reason. */
const outside: Array<[RegExp, string]> = [
  [/^\/openapi\.(json|yaml)$/, 'the contract itself'],
  [/^\/partner\/openapi\.(json|yaml)$/, 'the partner subset of the contract'],
  [/^(\/partner)?\/docs(\/.*)?$/, 'Swagger UI and its assets (@fastify/swagger-ui)'],
  [/^\/reference(\/redoc-[\d.]+\.standalone\.js)?$/, 'Redoc, served locally'],
  [/^\/admin\/queues\*?$/, 'bull-arena, behind the cookie openQueueDashboard hands an admin (checked below)'],
  [/^\*$/, 'CORS preflight (OPTIONS only)']
]

/** Method and path of every route, read from Fastify's route tree. */
function registeredRoutes (tree: string): Array<{ path: string, methods: string[] }> {
  const routes: Array<{ path: string, methods: string[] }> = []
  const stack: string[] = []
  for (const line of tree.split('\n')) {
    const match = /^([│├└─\s]*)(\S.*?) \(([A-Z, -]+)\)$/.exec(line)
    if (!match) continue
    const depth = Math.round(match[1]!.length / 4)
    stack.length = depth
    stack[depth] = match[2]!
    routes.push({ path: stack.join(''), methods: match[3]!.split(/,\s*/).filter((m) => m !== '-') })
  }
  return routes
}

t.test('security › inventory › every registered route is in the spec or listed with its reason', async (t) => {
  const app = await build(t)
  const routes = registeredRoutes(app.printRoutes({ commonPrefix: false }))
  t.ok(routes.length > 60, `${routes.length} routes read from the router`)
  const spec = new Set(operations.map((op) => `${op.method} ${op.path.replace(/\{(\w+)\}/g, ':$1')}`))

  const undocumented: string[] = []
  for (const { path, methods } of routes) {
    if (outside.some(([pattern]) => pattern.test(path))) {
      if (path === '*') t.same(methods, ['OPTIONS'], 'the catch-all answers preflights only')
      continue
    }
    for (const method of methods) {
      // HEAD comes with every GET (Fastify's exposeHeadRoutes).
      const key = `${method === 'HEAD' ? 'GET' : method} ${path}`
      if (!spec.has(key)) undocumented.push(`${method} ${path}`)
    }
  }
  t.same(undocumented, [], 'no route outside the spec but the listed ones')

  const found = new Set(routes.flatMap(({ path, methods }) => methods.map((m) => `${m} ${path}`)))
  t.same([...spec].filter((key) => !found.has(key)), [], 'every operation is registered')

  // The dashboard outside the spec: nothing of it answers without the admin's cookie.
  for (const url of ['/admin/queues', '/admin/queues/api/queues', '/admin/queues/anything']) {
    const res = await app.inject({ method: 'GET', url })
    t.ok([401, 403].includes(res.statusCode), `${url} without the cookie: ${res.statusCode}`)
  }
})
