import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { partners } from '../partners/partner-fixtures.js'

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000)
const at = (iso: string) => new Date(iso)

t.test('getPartnerUsage › valid › container hours per user within the month (UTC) and the totals over every page', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, headers } = await f.withKey()
  const ada = await f.member(partner.id, { name: 'Ada', email: 'ada@school.test', createdAt: minutesAgo(3) })
  const bob = await f.member(partner.id, { name: 'Bob', createdAt: minutesAgo(2) })
  const idle = await f.member(partner.id, { createdAt: minutesAgo(1) })
  await f.usage(ada.id, 3600, at('2026-10-01T00:00:00Z'))
  await f.usage(ada.id, 1800, at('2026-10-31T23:59:59Z'))
  await f.usage(bob.id, 900, at('2026-10-15T12:00:00Z'))
  await f.usage(bob.id, 7200, at('2026-11-01T00:00:00Z')) // November
  await f.usage(ada.id, 7200, at('2026-09-30T23:59:59Z')) // September

  const first = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { month: '2026-10', limit: '1' }, headers })
  t.equal(first.statusCode, 200)
  t.same(first.json(), {
    month: '2026-10',
    from: '2026-10-01T00:00:00.000Z',
    to: '2026-11-01T00:00:00.000Z',
    totals: { users: 2, containers: 3, seconds: 6300, hours: 1.75 },
    items: [{ userId: bob.id, email: bob.email, name: 'Bob', containers: 1, seconds: 900, hours: 0.25 }],
    nextCursor: first.json().nextCursor
  })
  t.ok(first.json().nextCursor)
  const second = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { month: '2026-10', limit: '1', cursor: first.json().nextCursor }, headers })
  t.same(second.json().items, [{ userId: ada.id, email: 'ada@school.test', name: 'Ada', containers: 2, seconds: 5400, hours: 1.5 }])
  t.same(second.json().totals, first.json().totals, 'totals cover every page')
  t.equal(second.json().nextCursor, null)
  t.notOk([...first.json().items, ...second.json().items].some((i: { userId: string }) => i.userId === idle.id), 'users without usage are not listed')

  const one = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { month: '2026-10', user: ada.id }, headers })
  t.same(one.json().totals, { users: 1, containers: 2, seconds: 5400, hours: 1.5 })
  const none = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { month: '2026-10', user: idle.id }, headers })
  t.equal(none.statusCode, 200)
  t.same(none.json().items, [])
  t.same(none.json().totals, { users: 0, containers: 0, seconds: 0, hours: 0 })
})

t.test('getPartnerUsage › valid › the month defaults to the current one', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, headers } = await f.withKey()
  const ada = await f.member(partner.id)
  await f.usage(ada.id, 36, new Date())
  const res = await app.inject({ method: 'GET', url: '/v1/partner/usage', headers })
  const now = new Date()
  t.equal(res.json().month, `${now.getUTCFullYear()}-${String(now.getUTCMonth() + 1).padStart(2, '0')}`)
  t.same(res.json().totals, { users: 1, containers: 1, seconds: 36, hours: 0.01 })
})

t.test('getPartnerUsage › valid › BOLA: partner A\'s usage holds none of partner B\'s users or hours', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const ofA = await f.member(a.partner.id)
  const ofB = await f.member(b.partner.id)
  const loner = await f.member(null)
  const when = at('2026-10-10T10:00:00Z')
  await f.usage(ofA.id, 60, when)
  await f.usage(ofB.id, 3600, when)
  await f.usage(loner.id, 3600, when)
  const res = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { month: '2026-10' }, headers: a.headers })
  t.same(res.json().items.map((i: { userId: string }) => i.userId), [ofA.id])
  t.same(res.json().totals, { users: 1, containers: 1, seconds: 60, hours: 0.02 })
})

t.test('getPartnerUsage › invalid input › bad months, users, limits and cursors are 400', async (t) => {
  const app = await fileApp()
  const { headers } = await partners(app).withKey()
  const queries: Array<Record<string, string>> = [{ month: '2026-13' }, { month: '2026-1' }, { month: '10-2026' }, { month: '2026-10-01' }, { user: 'bob' }, { limit: '0' }, { cursor: '*' }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: '/v1/partner/usage', query, headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
  }
})

t.test('getPartnerUsage › non-existing › an unknown user, or another partner\'s, is a 404 (the same answer)', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const ofB = await f.member(b.partner.id)
  await f.usage(ofB.id, 3600, new Date())
  const theirs = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { user: ofB.id }, headers: a.headers })
  const unknown = await app.inject({ method: 'GET', url: '/v1/partner/usage', query: { user: '00000000-0000-4000-8000-000000000000' }, headers: a.headers })
  for (const res of [theirs, unknown]) {
    t.equal(res.statusCode, 404)
    t.equal(res.json().code, 'not_found')
    t.equal(res.json().title, 'User not found')
  }
  t.notOk(theirs.body.includes('3600'), 'nothing of B\'s usage leaks')
})

t.test('getPartnerUsage › insufficient permissions › no key or a revoked one 401, a key without partner:read 403, a user token 401', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const partner = await f.partner()
  const revoked = await f.key(partner.id, { revoked: true })
  const scopeless = await f.key(partner.id, { scopes: [] })
  const url = '/v1/partner/usage'
  t.equal((await app.inject({ method: 'GET', url })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url, headers: revoked.headers })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url, headers: scopeless.headers })).json().code, 'forbidden')
  t.equal((await app.inject({ method: 'GET', url, headers: bearer(await given(app).token({ role: 'admin', scopes: ['admin'] })) })).statusCode, 401)
})
