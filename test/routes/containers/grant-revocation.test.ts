// Issue 22, item 2: connection grants are revocable, one or all, and a revocation racing with uses wins.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { grant, introspect, setup, view } from './grant-fixtures.js'

t.test('revokeConnectionGrant › valid › the grant stops at once, others go on; revoking again is 204', async (t) => {
  const { app, user, container, host } = await setup(t)
  const one = (await grant(app, container.id, user.headers)).json()
  const two = (await grant(app, container.id, user.headers)).json()
  const res = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${one.id}`, headers: user.headers })
  t.equal(res.statusCode, 204)
  t.same((await introspect(app, host, one.token)).json(), { active: false })
  t.equal((await view(app, container.id, user.headers, one.token)).json().connection, null)
  t.equal((await introspect(app, host, two.token)).json().active, true)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${one.id}`, headers: user.headers })).statusCode, 204)
  const audit = await app.db.selectFrom('audit_event').select('action').where('action', '=', 'container.grant_revoked').execute()
  t.equal(audit.length, 1, 'audited once')
})

t.test('revokeConnectionGrant › valid › revocation racing with uses: once revoked, no use succeeds', async (t) => {
  const { app, user, container, host } = await setup(t)
  const g = (await grant(app, container.id, user.headers)).json()
  const uses = Array.from({ length: 20 }, (_, i) => i % 2 === 0 ? introspect(app, host, g.token) : view(app, container.id, user.headers, g.token))
  const revoke = app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${g.id}`, headers: user.headers })
  const [revoked, ...answers] = await Promise.all([revoke, ...uses])
  t.equal(revoked.statusCode, 204)
  for (const a of answers) t.equal(a.statusCode, 200, 'each use answers, live or not: no error')
  const after = await Promise.all(Array.from({ length: 10 }, () => introspect(app, host, g.token)))
  t.ok(after.every((a) => a.json().active === false), 'after the revocation answered, every use is refused')
  t.equal((await view(app, container.id, user.headers, g.token)).json().connection, null)
})

t.test('revokeConnectionGrant › insufficient permissions › another user 404, no token 401; the grant lives on', async (t) => {
  const { app, user, container, host } = await setup(t)
  const g = (await grant(app, container.id, user.headers)).json()
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${g.id}`, headers: stranger.headers })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${g.id}` })).statusCode, 401)
  t.equal((await introspect(app, host, g.token)).json().active, true)
})

t.test('revokeConnectionGrant › invalid input › a malformed grant id is 400', async (t) => {
  const { app, user, container } = await setup(t)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/nope`, headers: user.headers })).statusCode, 400)
})

t.test('revokeConnectionGrant › non-existing › an unknown grant, or one of another container, is 404', async (t) => {
  const { app, user, container } = await setup(t)
  const res = await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants/${randomUUID()}`, headers: user.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('revokeConnectionGrants › valid › every live grant stops; 204 also with none', async (t) => {
  const { app, user, container, host } = await setup(t)
  const grants = [(await grant(app, container.id, user.headers)).json(), (await grant(app, container.id, user.headers)).json()]
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants`, headers: user.headers })).statusCode, 204)
  for (const g of grants) t.same((await introspect(app, host, g.token)).json(), { active: false })
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants`, headers: user.headers })).statusCode, 204)
  const audit = await app.db.selectFrom('audit_event').select('details').where('action', '=', 'container.grants_revoked').orderBy('at').execute()
  t.match(audit, [{ details: { grants: 2 } }, { details: { grants: 0 } }])
})

t.test('revokeConnectionGrants › insufficient permissions › another user 404, no token 401', async (t) => {
  const { app, user, container, host } = await setup(t)
  const g = (await grant(app, container.id, user.headers)).json()
  const stranger = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants`, headers: stranger.headers })).statusCode, 404)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${container.id}/grants` })).statusCode, 401)
  t.equal((await introspect(app, host, g.token)).json().active, true)
})

t.test('revokeConnectionGrants › invalid input › a malformed container id is 400', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/containers/nope/grants', headers: user.headers })).statusCode, 400)
})

t.test('revokeConnectionGrants › non-existing › an unknown container is 404', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/containers/${randomUUID()}/grants`, headers: user.headers })).statusCode, 404)
})
