import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../app.js'
import { build, fileApp, testConfig } from '../helpers/build.js'
import { given } from '../helpers/given.js'

t.test('errors › an unknown route is a 404 problem', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/nothing-here?x=1' })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.same(res.json(), {
    type: 'https://docs.fractal.co/problems/not_found',
    title: 'Not found',
    status: 404,
    code: 'not_found',
    detail: 'There is no route GET /v1/nothing-here.',
    instance: '/v1/nothing-here',
    requestId: res.headers['x-request-id']
  })
})

t.test('errors › a body over BODY_LIMIT is a 413 problem', async (t) => {
  const app = await build(t, { BODY_LIMIT: '1024' })
  const patch = (authorization: string) => app.inject({ method: 'PATCH', url: '/v1/regions/us-east-1', payload: { name: 'x'.repeat(2000) }, headers: { authorization } })
  const res = await patch(`Bearer ${await given(app).token({ role: 'admin', scopes: ['catalog:write'] })}`)
  t.equal(res.statusCode, 413)
  t.equal(res.json().code, 'payload_too_large')
  t.equal((await patch('Bearer x')).statusCode, 401, 'a stranger is refused before the body is read')
})

t.test('errors › an unexpected failure is a 500 that leaks nothing and is logged with the request id', async (t) => {
  const lines: Array<Record<string, unknown>> = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const app = await buildApp(await testConfig(t, { LOG_LEVEL: 'info' }), { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  // A route outside the spec, only to make something throw deep inside.
  app.get('/boom', async () => { throw new Error('password=hunter2 at db.internal:5432') })

  const res = await app.inject({ method: 'GET', url: '/boom', headers: { 'x-request-id': 'req-boom-1' } })

  t.equal(res.statusCode, 500)
  t.match(res.json(), { code: 'internal', status: 500, requestId: 'req-boom-1' })
  t.notMatch(res.body, /hunter2|db\.internal|at /, 'no message or stack in the body')
  const logged = lines.find((l) => l.msg === 'request failed')
  t.ok(logged, 'the failure is logged')
  t.equal(logged?.reqId, 'req-boom-1')
  t.match((logged?.err as { message: string }).message, /hunter2/, 'with the real error, for us')
})

t.test('errors › a wrong method on a known path is a problem too', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'DELETE', url: '/v1/regions' })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})
