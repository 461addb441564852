// The partnerKey security scheme on the partner operations: which keys get in, what the others get.
import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { partners } from '../partners/partner-fixtures.js'

const operations = ['/v1/partner/users', '/v1/partner/usage', '/v1/partner/containers']

t.test('listPartnerUsers › insufficient permissions › missing, malformed, wrong, expired and revoked keys are 401 on every partner operation', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, key } = await f.withKey()
  const expired = await f.key(partner.id, { expiresAt: new Date(Date.now() - 1000) })
  const revoked = await f.key(partner.id, { revoked: true })
  // The right shape, the right prefix, another secret.
  const wrong = key.slice(0, -4) + (key.endsWith('AAAA') ? 'BBBB' : 'AAAA')
  const cases: Array<[string, Record<string, string>, RegExp]> = [
    ['no key', {}, /required/],
    ['malformed', { 'x-api-key': 'let-me-in' }, /not valid/],
    ['wrong secret', { 'x-api-key': wrong }, /not valid/],
    ['expired', expired.headers, /expired/],
    ['revoked', revoked.headers, /revoked/]
  ]
  for (const url of operations) {
    for (const [name, headers, detail] of cases) {
      const res = await app.inject({ method: 'GET', url, headers })
      t.equal(res.statusCode, 401, `${url}: ${name}`)
      t.match(res.headers['content-type'], /application\/problem\+json/)
      t.match(res.json(), { code: 'unauthorized', detail }, `${url}: ${name}`)
    }
  }
  const untouched = await app.db.selectFrom('partner_api_key').select('last_used_at').where('id', 'in', [expired.row.id, revoked.row.id]).execute()
  t.same(untouched.map((r) => r.last_used_at), [null, null], 'refused keys are not marked used')
})

t.test('listPartnerUsers › insufficient permissions › a key without partner:read is 403 on every partner operation', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const partner = await f.partner()
  const scopeless = await f.key(partner.id, { scopes: [] })
  for (const url of operations) {
    const res = await app.inject({ method: 'GET', url, headers: scopeless.headers })
    t.equal(res.statusCode, 403, url)
    t.match(res.json(), { code: 'forbidden', detail: /partner:read/ })
  }
})

t.test('listPartnerUsers › insufficient permissions › user and admin access tokens are no partner credential (401)', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).signedIn()
  for (const url of operations) {
    t.equal((await app.inject({ method: 'GET', url, headers: user.headers })).statusCode, 401, `${url}: user token`)
    t.equal((await app.inject({ method: 'GET', url, headers: admin.headers })).statusCode, 401, `${url}: admin token`)
    t.equal((await app.inject({ method: 'GET', url, headers: { 'x-api-key': user.accessToken } })).statusCode, 401, `${url}: a token as the key`)
  }
})

t.test('listPartnerUsers › valid › last_used_at is written on first use, then at most once a minute', async (t) => {
  const app = await fileApp()
  const { row, headers } = await partners(app).withKey()
  const lastUsed = async () => (await app.db.selectFrom('partner_api_key').select('last_used_at').where('id', '=', row.id).executeTakeFirstOrThrow()).last_used_at

  await app.inject({ method: 'GET', url: '/v1/partner/users', headers })
  const first = await lastUsed()
  t.ok(first, 'marked on first use')
  await app.inject({ method: 'GET', url: '/v1/partner/users', headers })
  t.same(await lastUsed(), first, 'not written again within the minute')

  const aMinuteAgo = new Date(Date.now() - 61_000)
  await app.db.updateTable('partner_api_key').set({ last_used_at: aMinuteAgo }).where('id', '=', row.id).execute()
  await app.inject({ method: 'GET', url: '/v1/partner/users', headers })
  t.ok((await lastUsed())!.getTime() > aMinuteAgo.getTime(), 'written again after a minute')
})

t.test('listPartnerUsers › valid › the rate limit counts per key: one key at its limit leaves another alone', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const limit = app.openapi.operations.get('listPartnerUsers')!.rateLimit!.max
  let last
  for (let i = 0; i <= limit; i++) last = await app.inject({ method: 'GET', url: '/v1/partner/users', headers: a.headers })
  t.equal(last!.statusCode, 429)
  t.equal(last!.json().code, 'rate_limited')
  t.ok(last!.headers['retry-after'])
  const other = await app.inject({ method: 'GET', url: '/v1/partner/users', headers: b.headers })
  t.equal(other.statusCode, 200, 'another key (same IP) is not limited')
  const sameKeyOtherPartnerOp = await app.inject({ method: 'GET', url: '/v1/partner/containers', headers: a.headers })
  t.equal(sameKeyOtherPartnerOp.statusCode, 200, 'limits are per operation')
  t.equal((await app.inject({ method: 'GET', url: '/v1/partner/users', headers: bearer('x') })).statusCode, 401, 'no key: counted against the IP, then refused')
})
