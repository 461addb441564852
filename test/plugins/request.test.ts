import t from 'tap'
import { build, fileApp } from '../helpers/build.js'

t.test('request id › a well-formed X-Request-Id is kept and echoed', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'edge-abc.123' } })
  t.equal(res.headers['x-request-id'], 'edge-abc.123')
})

t.test('request id › a missing or malformed one is replaced by a generated UUID', async (t) => {
  const app = await fileApp()
  for (const headers of [{}, { 'x-request-id': 'bad id with spaces\n' }, { 'x-request-id': 'x'.repeat(300) }]) {
    const res = await app.inject({ method: 'GET', url: '/healthz', headers })
    t.match(res.headers['x-request-id'], /^[0-9a-f-]{36}$/)
  }
})

t.test('security headers › helmet sets the usual headers', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(res.headers['x-content-type-options'], 'nosniff')
  t.match(res.headers['strict-transport-security'], /max-age=/)
  t.equal(res.headers['x-frame-options'], 'DENY')
  t.equal(res.headers['content-security-policy'], "default-src 'none';frame-ancestors 'none'")
  t.notOk(res.headers['x-powered-by'])
})

t.test('CORS › only origins on the allow-list get CORS headers', async (t) => {
  const app = await build(t, { CORS_ORIGINS: 'https://app.fractal.co, https://admin.fractal.co' })
  const allowed = await app.inject({ method: 'OPTIONS', url: '/v1/regions', headers: { origin: 'https://app.fractal.co', 'access-control-request-method': 'GET' } })
  t.equal(allowed.statusCode, 204)
  t.equal(allowed.headers['access-control-allow-origin'], 'https://app.fractal.co')
  const denied = await app.inject({ method: 'GET', url: '/v1/regions', headers: { origin: 'https://evil.example' } })
  t.notOk(denied.headers['access-control-allow-origin'])
})

t.test('CORS › none by default', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/regions', headers: { origin: 'https://app.fractal.co' } })
  t.notOk(res.headers['access-control-allow-origin'])
})

t.test('docs › the contract is served as JSON and YAML with a strong ETag, Swagger UI at /docs', async (t) => {
  const app = await build(t, { PUBLIC_URL: 'https://api.fractal.co' })
  const json = await app.inject({ method: 'GET', url: '/openapi.json' })
  t.equal(json.statusCode, 200)
  const doc = json.json()
  t.equal(doc.openapi, '3.1.0')
  t.same(doc.servers, [{ url: 'https://api.fractal.co', description: 'This server' }])
  t.ok(doc.paths['/v1/regions'].get)
  const again = await app.inject({ method: 'GET', url: '/openapi.json', headers: { 'if-none-match': json.headers.etag as string } })
  t.equal(again.statusCode, 304)
  const yaml = await app.inject({ method: 'GET', url: '/openapi.yaml' })
  t.match(yaml.headers['content-type'], /yaml/)
  t.match(yaml.body, /^openapi: 3\.1\.0/m)
  const ui = await app.inject({ method: 'GET', url: '/docs/' })
  t.equal(ui.statusCode, 200)
  t.match(ui.body, /swagger-ui/i)
  const init = await app.inject({ method: 'GET', url: '/docs/static/swagger-initializer.js' })
  t.match(init.body, /persistAuthorization":\s*true/, 'Authorize survives a reload')
})
