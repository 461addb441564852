import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { partners } from './partner-fixtures.js'

t.test('createPartner › valid › an admin creates a partner; it is audited', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })

  const res = await app.inject({ method: 'POST', url: '/v1/admin/partners', payload: { name: '  Springfield Elementary ' }, headers: admin.headers })

  t.equal(res.statusCode, 201)
  t.match(res.json(), { id: /^[0-9a-f-]{36}$/, name: 'Springfield Elementary', users: 0, createdAt: String })
  const row = await app.db.selectFrom('partner').selectAll().where('id', '=', res.json().id).executeTakeFirstOrThrow()
  t.equal(row.name, 'Springfield Elementary')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'partner.created').where('target_id', '=', row.id).executeTakeFirstOrThrow()
  t.match(audit, { actor_id: admin.account.id, target_type: 'partner', target_id: row.id })
})

t.test('createPartner › invalid input › a missing, blank or too long name, extra fields; a taken name is 409', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  // The file's tests share an app and run one at a time: nothing written is no more partners than before.
  const partnersBefore = await app.db.selectFrom('partner').select('id').execute().then((r) => r.length)
  for (const payload of [{}, { name: '' }, { name: '   ' }, { name: 'x'.repeat(121) }, { name: 'Acme', id: '00000000-0000-4000-8000-000000000000' }]) {
    const res = await app.inject({ method: 'POST', url: '/v1/admin/partners', payload, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.equal(res.json().code, 'validation_failed')
  }
  t.equal(await app.db.selectFrom('partner').select('id').execute().then((r) => r.length), partnersBefore, 'nothing written')

  await app.inject({ method: 'POST', url: '/v1/admin/partners', payload: { name: 'Acme' }, headers: admin.headers })
  const again = await app.inject({ method: 'POST', url: '/v1/admin/partners', payload: { name: 'ACME' }, headers: admin.headers })
  t.equal(again.statusCode, 409)
  t.equal(again.json().code, 'conflict')
})

t.test('createPartner › insufficient permissions › users and developers get 403, no token 401, a partner key 401', async (t) => {
  const app = await fileApp()
  const payload = { name: 'Sneaky' }
  const user = await given(app).signedIn()
  const asUser = await app.inject({ method: 'POST', url: '/v1/admin/partners', payload, headers: user.headers })
  t.equal(asUser.statusCode, 403)
  t.equal(asUser.json().code, 'forbidden')
  const developer = await given(app).token({ role: 'developer', scopes: ['account', 'fleet:read', 'fleet:write', 'catalog:write'] })
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/partners', payload, headers: bearer(developer) })).statusCode, 403)
  const none = await app.inject({ method: 'POST', url: '/v1/admin/partners', payload })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /application\/problem\+json/)

  const { key, headers } = await partners(app).withKey()
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/partners', payload, headers })).statusCode, 401, 'X-Api-Key is no admin credential')
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/partners', payload, headers: bearer(key) })).statusCode, 401, 'nor as a bearer token')
  t.equal(await app.db.selectFrom('partner').select('id').where('name', '=', 'Sneaky').execute().then((r) => r.length), 0)
})

t.test('listPartners › valid › pages newest first, with each partner\'s number of users', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const f = partners(app)
  const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000)
  const a = await f.partner('Alpha', minutesAgo(3))
  await f.partner('Beta', minutesAgo(2))
  await f.partner('Gamma', minutesAgo(1))
  await f.member(a.id)
  await f.member(a.id)
  await f.member(a.id, { deleted: true })

  const first = await app.inject({ method: 'GET', url: '/v1/admin/partners', query: { limit: '2' }, headers: admin.headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().items.map((p: { name: string }) => p.name), ['Gamma', 'Beta'])
  const second = await app.inject({ method: 'GET', url: '/v1/admin/partners', query: { limit: '2', cursor: first.json().nextCursor }, headers: admin.headers })
  t.same(second.json().items.map((p: { name: string, users: number }) => [p.name, p.users]), [['Alpha', 2]])
  t.equal(second.json().nextCursor, null)
})

t.test('listPartners › invalid input › bad limit and cursor are 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const queries: Array<Record<string, string>> = [{ limit: '0' }, { limit: '101' }, { cursor: '***' }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: '/v1/admin/partners', query, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
  }
  const forged = await app.inject({ method: 'GET', url: '/v1/admin/partners', query: { cursor: Buffer.from('never|x').toString('base64url') }, headers: admin.headers })
  t.equal(forged.json().code, 'bad_request')
})

t.test('listPartners › insufficient permissions › a user gets 403, no token 401, a partner key 401', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/partners', headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/partners' })).statusCode, 401)
  const { headers } = await partners(app).withKey()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/partners', headers })).statusCode, 401)
})
