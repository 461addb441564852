import { createHash } from 'node:crypto'
import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { partners } from './partner-fixtures.js'

const day = 86_400_000
const missing = '00000000-0000-4000-8000-000000000000'

t.test('createPartnerKey › valid › the key is shown once, stored as its SHA-256 only, and works', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const partner = await partners(app).partner()

  const res = await app.inject({ method: 'POST', url: `/v1/admin/partners/${partner.id}/keys`, payload: { name: 'SIS sync', scopes: ['partner:read'] }, headers: admin.headers })

  t.equal(res.statusCode, 201)
  const body = res.json()
  t.match(body, { partnerId: partner.id, name: 'SIS sync', scopes: ['partner:read'], lastUsedAt: null, revokedAt: null })
  t.match(body.key, /^frp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/)
  t.ok(body.key.startsWith(`${body.prefix}_`), 'the prefix is the start of the key')
  const expiresIn = Date.parse(body.expiresAt) - Date.now()
  t.ok(expiresIn > 364 * day && expiresIn <= 365 * day, 'a year by default')

  const row = await app.db.selectFrom('partner_api_key').selectAll().where('id', '=', body.id).executeTakeFirstOrThrow()
  t.equal(row.key_hash, createHash('sha256').update(body.key).digest('base64url'), 'stored hashed')
  const secret = body.key.slice(body.prefix.length + 1)
  t.notOk(Object.values(row).some((v) => String(v).includes(secret)), 'the secret is in no column')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'partner.key_created').where('target_id', '=', body.id).executeTakeFirstOrThrow()
  t.match(audit, { actor_id: admin.account.id, target_id: body.id })
  t.notOk(JSON.stringify(audit).includes(secret), 'nor in the audit trail')

  const list = await app.inject({ method: 'GET', url: `/v1/admin/partners/${partner.id}/keys`, headers: admin.headers })
  t.notOk(list.body.includes(secret), 'never shown again')
  t.notOk(list.body.includes(row.key_hash), 'nor its hash')

  const call = await app.inject({ method: 'GET', url: '/v1/partner/users', headers: { 'x-api-key': body.key } })
  t.equal(call.statusCode, 200)
})

t.test('createPartnerKey › valid › an explicit expiry within the year is kept', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const partner = await partners(app).partner()
  const expiresAt = new Date(Date.now() + 30 * day).toISOString()
  const res = await app.inject({ method: 'POST', url: `/v1/admin/partners/${partner.id}/keys`, payload: { name: 'Trial', scopes: ['partner:read'], expiresAt }, headers: admin.headers })
  t.equal(res.statusCode, 201)
  t.equal(res.json().expiresAt, expiresAt)
})

t.test('createPartnerKey › invalid input › bad names, scopes and expiries; nothing is written', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const partner = await partners(app).partner()
  const url = `/v1/admin/partners/${partner.id}/keys`
  const schemaErrors = [
    { scopes: ['partner:read'] },
    { name: 'x' },
    { name: 'x', scopes: [] },
    { name: 'x', scopes: ['admin'] },
    { name: 'x', scopes: ['partner:read', 'partner:read'] },
    { name: '', scopes: ['partner:read'] },
    { name: 'x', scopes: ['partner:read'], expiresAt: 'next year' },
    { name: 'x', scopes: ['partner:read'], key: 'frp_000000000000_mine' }
  ]
  for (const payload of schemaErrors) {
    const res = await app.inject({ method: 'POST', url, payload, headers: admin.headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
  const past = await app.inject({ method: 'POST', url, payload: { name: 'x', scopes: ['partner:read'], expiresAt: new Date(Date.now() - 1000).toISOString() }, headers: admin.headers })
  t.equal(past.statusCode, 422)
  t.match(past.json(), { code: 'unprocessable', errors: [{ field: '/body/expiresAt' }] })
  const tooFar = await app.inject({ method: 'POST', url, payload: { name: 'x', scopes: ['partner:read'], expiresAt: new Date(Date.now() + 366 * day).toISOString() }, headers: admin.headers })
  t.equal(tooFar.statusCode, 422)
  t.match(tooFar.json().errors, [{ field: '/body/expiresAt', message: /one year/ }])
  const badId = await app.inject({ method: 'POST', url: '/v1/admin/partners/not-a-uuid/keys', payload: { name: 'x', scopes: ['partner:read'] }, headers: admin.headers })
  t.equal(badId.statusCode, 400)
  t.equal(await app.db.selectFrom('partner_api_key').select('id').where('partner_id', '=', partner.id).execute().then((r) => r.length), 0, 'no key made')
})

t.test('createPartnerKey › insufficient permissions › a user 403, no token 401, the partner\'s own key 401', async (t) => {
  const app = await fileApp()
  const { partner, headers } = await partners(app).withKey()
  const url = `/v1/admin/partners/${partner.id}/keys`
  const payload = { name: 'more', scopes: ['partner:read'] }
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'POST', url, payload, headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url, payload })).statusCode, 401)
  t.equal((await app.inject({ method: 'POST', url, payload, headers })).statusCode, 401, 'a partner cannot mint keys')
  t.equal(await app.db.selectFrom('partner_api_key').select('id').where('partner_id', '=', partner.id).execute().then((r) => r.length), 1)
})

t.test('createPartnerKey › non-existing › an unknown partner is a 404', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await app.inject({ method: 'POST', url: `/v1/admin/partners/${missing}/keys`, payload: { name: 'x', scopes: ['partner:read'] }, headers: admin.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})

t.test('listPartnerKeys › valid › newest first with expiry, last use and revocation, never a secret; another partner\'s keys are not listed', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const f = partners(app)
  const partner = await f.partner()
  const used = await f.key(partner.id)
  await app.db.updateTable('partner_api_key').set({ created_at: new Date(Date.now() - 60_000) }).where('id', '=', used.row.id).execute()
  const revoked = await f.key(partner.id, { revoked: true })
  await f.withKey()

  await app.inject({ method: 'GET', url: '/v1/partner/users', headers: used.headers })
  const first = await app.inject({ method: 'GET', url: `/v1/admin/partners/${partner.id}/keys`, query: { limit: '1' }, headers: admin.headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().items.map((k: { id: string }) => k.id), [revoked.row.id])
  t.match(first.json().items[0], { revokedAt: String, lastUsedAt: null, prefix: revoked.row.prefix })
  const second = await app.inject({ method: 'GET', url: `/v1/admin/partners/${partner.id}/keys`, query: { limit: '1', cursor: first.json().nextCursor }, headers: admin.headers })
  t.same(second.json().items.map((k: { id: string }) => k.id), [used.row.id])
  t.match(second.json().items[0], { revokedAt: null, lastUsedAt: String, expiresAt: used.row.expires_at.toISOString() })
  t.equal(second.json().nextCursor, null)
  t.notMatch(first.body + second.body, /frp_[0-9a-f]{12}_/, 'no whole key')
  t.notOk(Object.keys(second.json().items[0]).includes('key'))
})

t.test('listPartnerKeys › invalid input › bad ids, limits and cursors are 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const partner = await partners(app).partner()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/partners/nope/keys', headers: admin.headers })).statusCode, 400)
  const queries: Array<Record<string, string>> = [{ limit: '0' }, { cursor: '!' }]
  for (const query of queries) {
    t.equal((await app.inject({ method: 'GET', url: `/v1/admin/partners/${partner.id}/keys`, query, headers: admin.headers })).statusCode, 400, JSON.stringify(query))
  }
})

t.test('listPartnerKeys › insufficient permissions › a user 403, no token 401, a partner key 401', async (t) => {
  const app = await fileApp()
  const { partner, headers } = await partners(app).withKey()
  const url = `/v1/admin/partners/${partner.id}/keys`
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url, headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url, headers })).statusCode, 401)
})

t.test('listPartnerKeys › non-existing › an unknown partner is a 404; a partner without keys an empty page', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const res = await app.inject({ method: 'GET', url: `/v1/admin/partners/${missing}/keys`, headers: admin.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  const partner = await partners(app).partner()
  const empty = await app.inject({ method: 'GET', url: `/v1/admin/partners/${partner.id}/keys`, headers: admin.headers })
  t.same(empty.json(), { items: [], nextCursor: null })
})

t.test('revokePartnerKey › valid › the key stops working at once; revoking again is a 204 no-op, audited once', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const { partner, row, headers } = await partners(app).withKey()
  t.equal((await app.inject({ method: 'GET', url: '/v1/partner/users', headers })).statusCode, 200)

  const url = `/v1/admin/partners/${partner.id}/keys/${row.id}`
  const res = await app.inject({ method: 'DELETE', url, headers: admin.headers })
  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  const after = await app.inject({ method: 'GET', url: '/v1/partner/users', headers })
  t.equal(after.statusCode, 401)
  t.match(after.json(), { code: 'unauthorized', detail: /revoked/ })

  const stored = await app.db.selectFrom('partner_api_key').select('revoked_at').where('id', '=', row.id).executeTakeFirstOrThrow()
  t.equal((await app.inject({ method: 'DELETE', url, headers: admin.headers })).statusCode, 204, 'idempotent')
  const still = await app.db.selectFrom('partner_api_key').select('revoked_at').where('id', '=', row.id).executeTakeFirstOrThrow()
  t.same(still.revoked_at, stored.revoked_at, 'the first revocation time is kept')
  const audits = await app.db.selectFrom('audit_event').select('id').where('action', '=', 'partner.key_revoked').where('target_id', '=', row.id).execute()
  t.equal(audits.length, 1)
})

t.test('revokePartnerKey › invalid input › ids that are not uuids are 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const { partner } = await partners(app).withKey()
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/admin/partners/${partner.id}/keys/frp_abc`, headers: admin.headers })).statusCode, 400)
  t.equal((await app.inject({ method: 'DELETE', url: `/v1/admin/partners/x/keys/${missing}`, headers: admin.headers })).statusCode, 400)
})

t.test('revokePartnerKey › insufficient permissions › a user 403, no token 401, the key itself 401; the key keeps working', async (t) => {
  const app = await fileApp()
  const { partner, row, headers } = await partners(app).withKey()
  const url = `/v1/admin/partners/${partner.id}/keys/${row.id}`
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url, headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'DELETE', url })).statusCode, 401)
  t.equal((await app.inject({ method: 'DELETE', url, headers })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url: '/v1/partner/users', headers })).statusCode, 200)
})

t.test('revokePartnerKey › non-existing › an unknown key, or a key of another partner, is a 404 and stays valid', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const unknown = await app.inject({ method: 'DELETE', url: `/v1/admin/partners/${a.partner.id}/keys/${missing}`, headers: admin.headers })
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'not_found')
  const crossed = await app.inject({ method: 'DELETE', url: `/v1/admin/partners/${a.partner.id}/keys/${b.row.id}`, headers: admin.headers })
  t.equal(crossed.statusCode, 404)
  t.equal((await app.inject({ method: 'GET', url: '/v1/partner/users', headers: b.headers })).statusCode, 200)
})
