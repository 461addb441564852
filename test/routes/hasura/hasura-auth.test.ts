import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../../app.js'
import { fileApp, testConfig } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

t.test('hasuraAuth › valid › a valid token gives its role and user id', async (t) => {
  const app = await fileApp()
  const dev = await given(app).signedIn({ role: 'developer' })
  const res = await app.inject({ method: 'GET', url: '/hasura/auth', headers: dev.headers })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { 'X-Hasura-Role': 'developer', 'X-Hasura-User-Id': dev.account.id })
  t.equal(res.headers['cache-control'], 'no-store')
})

t.test('hasuraAuth › valid › no token, a bad one or a revoked session is anonymous', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: user.headers })
  for (const headers of [{}, bearer('garbage'), { authorization: 'Basic abc' }, user.headers]) {
    const res = await app.inject({ method: 'GET', url: '/hasura/auth', headers })
    t.equal(res.statusCode, 200)
    t.same(res.json(), { 'X-Hasura-Role': 'anonymous' })
  }
})

t.test('hasuraAuth › invalid input › an oversized Authorization header is a 400', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/hasura/auth', headers: bearer('x'.repeat(5000)) })
  t.equal(res.statusCode, 400)
})

t.test('hasuraAuth › security › the token never reaches the logs', async (t) => {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(chunk.toString()); done() } })
  const app = await buildApp(await testConfig(t, { LOG_LEVEL: 'trace' }), { logger: { level: 'trace', stream } })
  t.teardown(() => app.close())
  const user = await given(app).signedIn()
  await app.inject({ method: 'GET', url: '/hasura/auth', headers: user.headers })
  t.ok(lines.length > 0)
  t.notOk(lines.some((l) => l.includes(user.accessToken)), 'no line carries the token')
})
