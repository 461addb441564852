// Issue 22, item 2: the AES key only with a live connection grant; grants expire, are good for one container,
// and the host agent verifies them (JWKS offline, or introspection).
import { randomUUID } from 'node:crypto'
import { createVerifier } from 'fast-jwt'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { grant, introspect, setup, view } from './grant-fixtures.js'

t.test('createConnectionGrant › valid › a signed grant with the connection details; the views show the key only with it', async (t) => {
  const { app, user, warm, container, host } = await setup(t)
  t.equal(container.connection, null, 'the assignment answer holds no AES key')
  t.equal(container.connectable, true)
  const res = await grant(app, container.id, user.headers, { lifetimeSeconds: 120 })
  t.equal(res.statusCode, 201)
  const body = res.json()
  t.equal(res.headers.location, `/v1/containers/${container.id}/grants/${body.id}`)
  t.match(body, { containerId: container.id, connection: { ip: warm.host_ip, aesKey: warm.aes_key, ports: { tcp32262: 41000 } } })
  t.equal(Date.parse(body.expiresAt) - Date.parse(body.createdAt), 120_000)

  // The host agent can verify it offline with the JWKS we serve: ES256, our issuer, the container's audience.
  const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
  const { createPublicKey } = await import('node:crypto')
  const key = createPublicKey({ key: jwks.keys[0], format: 'jwk' }).export({ type: 'spki', format: 'pem' }).toString()
  const claims = createVerifier({ key, algorithms: ['ES256'], allowedAud: `urn:fractal:container:${container.id}`, allowedIss: app.config.jwt.issuer })(body.token)
  t.match(claims, { jti: body.id, sub: user.account.id, cid: container.id, host: warm.host_ip })
  t.throws(() => createVerifier({ key, algorithms: ['ES256'], allowedAud: app.config.jwt.audience })(body.token), 'refused as an access token')
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(body.token) })).statusCode, 401, 'a grant is no bearer token')

  t.equal((await view(app, container.id, user.headers)).json().connection, null, 'no grant: no connection details')
  t.equal((await view(app, container.id, user.headers, body.token)).json().connection.aesKey, warm.aes_key, 'with the live grant: the key')
  t.match((await introspect(app, host, body.token)).json(), { active: true, grantId: body.id, containerId: container.id, userId: user.account.id, expiresAt: body.expiresAt })
  const audit = await app.db.selectFrom('audit_event').select('action').where('target_id', '=', container.id).where('action', '=', 'container.grant_created').execute()
  t.equal(audit.length, 1)
})

t.test('createConnectionGrant › valid › past its lifetime a grant releases nothing and introspects inactive', async (t) => {
  const { app, clock, user, container, host } = await setup(t)
  const short = (await grant(app, container.id, user.headers, { lifetimeSeconds: 1 })).json()
  const long = (await grant(app, container.id, user.headers, { lifetimeSeconds: 3600 })).json()
  const fallback = (await grant(app, container.id, user.headers)).json()
  t.equal(Date.parse(fallback.expiresAt) - Date.parse(fallback.createdAt), 300_000, 'the configured default lifetime')
  clock.advance(1000)
  t.same((await introspect(app, host, short.token)).json(), { active: false }, 'one second on: the 1 s grant is over')
  t.equal((await view(app, container.id, user.headers, short.token)).json().connection, null)
  t.equal((await introspect(app, host, fallback.token)).json().active, true)
  clock.advance(300_000)
  t.same((await introspect(app, host, fallback.token)).json(), { active: false }, 'the default grant is over')
  t.equal((await introspect(app, host, long.token)).json().active, true)
  clock.advance(3600_000)
  const headers = bearer(await given(app).token({ sub: user.account.id, scopes: ['containers'] }))
  for (const g of [short, long, fallback]) {
    t.same((await introspect(app, host, g.token)).json(), { active: false }, 'past every grant\'s lifetime: none is live')
    t.equal((await view(app, container.id, headers, g.token)).json().connection, null)
  }
})

t.test('createConnectionGrant › valid › a grant is good for its own container on its own host only, and dies with the session', async (t) => {
  const { app, user, container, host } = await setup(t)
  const mine = (await grant(app, container.id, user.headers)).json()
  const other = await given(app).assignedContainer()
  t.equal((await view(app, other.container.id, other.user.headers, mine.token)).json().connection, null, 'another container\'s view: nothing')
  const elsewhere = await given(app).host(other.offer.region)
  t.same((await introspect(app, elsewhere, mine.token)).json(), { active: false }, 'another host: inactive')
  t.same((await introspect(app, host, mine.token.slice(0, -4) + 'AAAA')).json(), { active: false }, 'a tampered token: inactive')
  await app.db.updateTable('container').set({ state: 'stopping' }).where('id', '=', container.id).execute()
  t.same((await introspect(app, host, mine.token)).json(), { active: false }, 'a container that is stopping: inactive')
})

t.test('createConnectionGrant › valid › CONNECTION_GRANTS_REQUIRED=false keeps the key in the owner\'s views', async (t) => {
  const { container, warm } = await setup(t, { CONNECTION_GRANTS_REQUIRED: 'false' })
  t.equal(container.connection.aesKey, warm.aes_key)
})

t.test('createConnectionGrant › invalid input › a lifetime outside the bounds is 422, a malformed one 400; nothing written', async (t) => {
  const { app, user, container } = await setup(t, { GRANT_MIN_LIFETIME_SECONDS: '30', GRANT_MAX_LIFETIME_SECONDS: '3600' })
  const short = await grant(app, container.id, user.headers, { lifetimeSeconds: 10 })
  t.equal(short.statusCode, 422)
  t.match(short.json(), { code: 'unprocessable', errors: [{ field: '/body/lifetimeSeconds', message: 'must be between 30 and 3600' }] })
  t.equal((await grant(app, container.id, user.headers, { lifetimeSeconds: 3601 })).statusCode, 422)
  t.equal((await grant(app, container.id, user.headers, { lifetimeSeconds: 'long' })).statusCode, 400)
  t.equal((await grant(app, container.id, user.headers, { lifetimeSeconds: 60, extra: true })).statusCode, 400)
  t.same(await app.db.selectFrom('container_grant').select('id').execute(), [])
})

t.test('createConnectionGrant › invalid input › a container that does not run yet is 409', async (t) => {
  const { app, user, container } = await setup(t)
  await app.db.updateTable('container').set({ state: 'stopped' }).where('id', '=', container.id).execute()
  const res = await grant(app, container.id, user.headers)
  t.equal(res.statusCode, 409)
  t.equal(res.json().code, 'conflict')
})

t.test('createConnectionGrant › insufficient permissions › another user 404, an admin 404, no token 401', async (t) => {
  const { app, container } = await setup(t)
  const stranger = await given(app).signedIn()
  const admin = await given(app).signedIn({ role: 'admin' })
  t.equal((await grant(app, container.id, stranger.headers)).statusCode, 404)
  t.equal((await grant(app, container.id, admin.headers)).statusCode, 404, 'an admin never gets a grant of another\'s container')
  t.equal((await grant(app, container.id, {})).statusCode, 401)
  t.same(await app.db.selectFrom('container_grant').select('id').execute(), [])
})

t.test('createConnectionGrant › non-existing › an unknown container is 404', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()
  const res = await grant(app, randomUUID(), user.headers)
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('listContainers › valid › partner and admin views never carry a grant or a key', async (t) => {
  const { app, user, container, warm } = await setup(t, { CONNECTION_GRANTS_REQUIRED: 'false' })
  await grant(app, container.id, user.headers)
  const admin = await given(app).signedIn({ role: 'admin' })
  const all = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: admin.headers })
  t.equal(all.statusCode, 200)
  t.notMatch(all.body, warm.aes_key)
  t.notMatch(all.body, /token|grant/i)
})
