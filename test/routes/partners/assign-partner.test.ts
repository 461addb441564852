// updateUser's partnerId (PATCH /v1/admin/users/{userId}): how an admin puts a user in a partner's organisation.
import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { partners } from './partner-fixtures.js'

t.test('updateUser › valid › an admin puts a user in a partner and takes them out again; the partner sees them meanwhile; audited', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const { partner, headers } = await partners(app).withKey()
  const user = await given(app).signedIn()
  const url = `/v1/admin/users/${user.account.id}`

  const put = await app.inject({ method: 'PATCH', url, payload: { partnerId: partner.id }, headers: admin.headers })
  t.equal(put.statusCode, 200)
  t.match(put.json(), { id: user.account.id, partnerId: partner.id, role: 'user' })
  const seen = await app.inject({ method: 'GET', url: '/v1/partner/users', headers })
  t.same(seen.json().items.map((u: { id: string }) => u.id), [user.account.id])
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode, 200, 'the user stays signed in')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'user.partner_changed').where('target_id', '=', user.account.id).executeTakeFirstOrThrow()
  t.match(audit, { actor_id: admin.account.id, target_id: user.account.id, details: { from: null, to: partner.id } })

  const listed = await app.inject({ method: 'GET', url: '/v1/admin/users', headers: admin.headers })
  t.match(listed.json().items.find((u: { id: string }) => u.id === user.account.id), { partnerId: partner.id })

  const out = await app.inject({ method: 'PATCH', url, payload: { partnerId: null }, headers: admin.headers })
  t.equal(out.json().partnerId, null)
  t.same((await app.inject({ method: 'GET', url: '/v1/partner/users', headers })).json().items, [])
})

t.test('updateUser › invalid input › an unknown partner is 422 naming partnerId; a malformed one 400; nothing changes', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await partners(app).member(null)
  const url = `/v1/admin/users/${user.id}`
  const unknown = await app.inject({ method: 'PATCH', url, payload: { partnerId: '00000000-0000-4000-8000-000000000000' }, headers: admin.headers })
  t.equal(unknown.statusCode, 422)
  t.match(unknown.json(), { code: 'unprocessable', errors: [{ field: '/body/partnerId' }] })
  for (const partnerId of ['acme', 42, '']) {
    const res = await app.inject({ method: 'PATCH', url, payload: { partnerId }, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(partnerId))
  }
  const row = await app.db.selectFrom('account').select('partner_id').where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(row.partner_id, null)
})

t.test('updateUser › insufficient permissions › a user cannot put themselves in a partner', async (t) => {
  const app = await fileApp()
  const partner = await partners(app).partner()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { partnerId: partner.id }, headers: user.headers })
  t.equal(res.statusCode, 403)
  const row = await app.db.selectFrom('account').select('partner_id').where('id', '=', user.account.id).executeTakeFirstOrThrow()
  t.equal(row.partner_id, null)
})

t.test('updateUser › non-existing › assigning an unknown user to a partner is a 404', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const partner = await partners(app).partner()
  const res = await app.inject({ method: 'PATCH', url: '/v1/admin/users/00000000-0000-4000-8000-000000000000', payload: { partnerId: partner.id }, headers: admin.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})
