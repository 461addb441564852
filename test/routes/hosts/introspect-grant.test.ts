// Issue 22, item 2: the host agent's online check of a connection grant (introspection).
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { grant, introspect, setup } from '../containers/grant-fixtures.js'

t.test('introspectConnectionGrant › valid › the host of the container learns the grant\'s container, user and expiry; nothing else', async (t) => {
  const { app, user, container, host } = await setup(t)
  const g = (await grant(app, container.id, user.headers, { lifetimeSeconds: 600 })).json()
  const res = await introspect(app, host, g.token)
  t.equal(res.statusCode, 200)
  t.same(res.json(), { active: true, grantId: g.id, containerId: container.id, userId: user.account.id, expiresAt: g.expiresAt })
  t.notMatch(res.body, /aesKey|198\.51/, 'no connection details to the host either')
})

t.test('introspectConnectionGrant › insufficient permissions › a wrong or missing host secret is 401', async (t) => {
  const { app, user, container, host } = await setup(t)
  const g = (await grant(app, container.id, user.headers)).json()
  const wrong = await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/grants/introspect`, headers: { 'x-host-secret': 'x'.repeat(43) }, payload: { token: g.token } })
  t.equal(wrong.statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/grants/introspect`, payload: { token: g.token } })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/grants/introspect`, headers: user.headers, payload: { token: g.token } })).statusCode, 401, 'a user token is no host credential')
})

t.test('introspectConnectionGrant › invalid input › no token is 400, garbage is inactive', async (t) => {
  const { app, host } = await setup(t)
  t.equal((await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/grants/introspect`, headers: { 'x-host-secret': host.secret }, payload: {} })).statusCode, 400)
  t.same((await introspect(app, host, 'not-a-jwt')).json(), { active: false })
})

t.test('introspectConnectionGrant › non-existing › an unknown host is 401 (its secret cannot match)', async (t) => {
  const { app, host } = await setup(t)
  const res = await app.inject({ method: 'POST', url: `/v1/hosts/${randomUUID()}/grants/introspect`, headers: { 'x-host-secret': host.secret }, payload: { token: 'x' } })
  t.equal(res.statusCode, 401)
})
