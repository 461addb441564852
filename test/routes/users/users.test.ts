import { randomBytes } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

t.test('listUsers › valid › pages through accounts newest first, filtered by q and role', async (t) => {
  const app = await fileApp()
  // The file's tests share an app: this test's accounts carry a tag of their own, which q finds.
  const tag = randomBytes(4).toString('hex')
  const admin = await given(app).signedIn({ role: 'admin', email: `root-${tag}@example.test` })
  for (const n of [1, 2, 3]) await given(app).user({ email: `ada-${tag}-${n}@example.test`, name: `Ada ${n}` })
  await given(app).user({ email: `dev-${tag}@example.test`, role: 'developer' })

  const first = await app.inject({ method: 'GET', url: '/v1/admin/users', query: { limit: '2', q: `ADA-${tag.toUpperCase()}` }, headers: admin.headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().items.map((u: { email: string }) => u.email), [`ada-${tag}-3@example.test`, `ada-${tag}-2@example.test`])
  t.ok(first.json().nextCursor)
  const second = await app.inject({ method: 'GET', url: '/v1/admin/users', query: { limit: '2', q: `ada-${tag}`, cursor: first.json().nextCursor }, headers: admin.headers })
  t.same(second.json().items.map((u: { email: string }) => u.email), [`ada-${tag}-1@example.test`])
  t.equal(second.json().nextCursor, null)

  // Every account of this test matches q; the role filter keeps the developer alone.
  const devs = await app.inject({ method: 'GET', url: '/v1/admin/users', query: { role: 'developer', q: tag }, headers: admin.headers })
  t.same(devs.json().items.map((u: { email: string }) => u.email), [`dev-${tag}@example.test`])
  t.match(devs.json().items[0], { role: 'developer', disabled: false, emailVerified: true })
  t.notOk(JSON.stringify(devs.json()).match(/argon2|password/i), 'no hash in the answer')
})

t.test('listUsers › valid › q treats % and _ literally', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  await given(app).user({ email: 'plain@example.test' })
  const res = await app.inject({ method: 'GET', url: '/v1/admin/users', query: { q: '%' }, headers: admin.headers })
  t.equal(res.statusCode, 200)
  t.same(res.json().items, [])
})

t.test('listUsers › insufficient permissions › a user without users:read gets 403, no token 401', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/users', headers: user.headers })).statusCode, 403)
  const developer = await given(app).signedIn({ role: 'developer' })
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/users', headers: developer.headers })).json().code, 'forbidden')
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/users' })).statusCode, 401)
})

t.test('listUsers › invalid input › bad limit, role and cursor are 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const queries: Array<Record<string, string>> = [{ limit: '0' }, { role: 'root' }, { cursor: '***' }, { q: '' }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/users', query, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
  }
  const forged = await app.inject({ method: 'GET', url: '/v1/admin/users', query: { cursor: Buffer.from('yesterday|x').toString('base64url') }, headers: admin.headers })
  t.equal(forged.json().code, 'bad_request')
})

t.test('updateUser › valid › an admin grants a role: the user is signed out so new scopes apply, and it is audited', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).signedIn()

  const res = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { role: 'developer' }, headers: admin.headers })

  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: user.account.id, role: 'developer' })
  const me = await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })
  t.equal(me.statusCode, 401, 'the old token (user scopes) is dead')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'user.role_changed').where('target_id', '=', user.account.id).executeTakeFirstOrThrow()
  t.match(audit, { actor_id: admin.account.id, target_id: user.account.id, details: { from: 'user', to: 'developer' } })
})

t.test('updateUser › valid › disabling revokes sessions and refuses sign-in; enabling allows it again', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).signedIn({ email: 'bob@example.test', password: 'bobs-long-passphrase' })

  const off = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { disabled: true }, headers: admin.headers })
  t.match(off.json(), { disabled: true })
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode, 401)
  const signIn = () => app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'bob@example.test', password: 'bobs-long-passphrase' } })
  t.equal((await signIn()).statusCode, 401)
  const refresh = await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken: user.refreshToken } })
  t.equal(refresh.statusCode, 401)

  await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { disabled: false }, headers: admin.headers })
  t.equal((await signIn()).statusCode, 200)
})

t.test('updateUser › insufficient permissions › users and developers cannot change roles, not even their own', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { role: 'admin' }, headers: user.headers })
  t.equal(res.statusCode, 403)
  const developer = await given(app).signedIn({ role: 'developer' })
  const again = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${developer.account.id}`, payload: { role: 'admin' }, headers: developer.headers })
  t.equal(again.statusCode, 403)
  const row = await app.db.selectFrom('account').select('role').where('id', '=', developer.account.id).executeTakeFirstOrThrow()
  t.equal(row.role, 'developer')
  const forged = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { role: 'admin' }, headers: bearer('eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4Iiwic2NvcGVzIjpbInVzZXJzOndyaXRlIl19.') })
  t.equal(forged.statusCode, 401)
})

t.test('updateUser › invalid input › unknown role, empty body, extra fields; an admin cannot lock themselves out', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).user()
  for (const payload of [{ role: 'root' }, {}, { role: 'user', email: 'x@example.test' }, { disabled: 'yes' }]) {
    const res = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.id}`, payload, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
  const self = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${admin.account.id}`, payload: { role: 'user' }, headers: admin.headers })
  t.equal(self.statusCode, 422)
  t.equal(self.json().code, 'unprocessable')
  const bad = await app.inject({ method: 'PATCH', url: '/v1/admin/users/not-a-uuid', payload: { role: 'user' }, headers: admin.headers })
  t.equal(bad.statusCode, 400)
})

t.test('updateUser › non-existing › an unknown id is a 404', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await app.inject({ method: 'PATCH', url: '/v1/admin/users/00000000-0000-4000-8000-000000000000', payload: { role: 'user' }, headers: admin.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('audit › the audit table is append-only at the database level', async (t) => {
  const app = await build(t)
  await given(app).signedIn({ role: 'admin' })
  await app.db.insertInto('audit_event').values({ action: 'test.event', actor_id: null }).execute()
  await t.rejects(app.db.updateTable('audit_event').set({ action: 'rewritten' }).execute(), /append-only/)
  await t.rejects(app.db.deleteFrom('audit_event').execute(), /append-only/)
})
