import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { partners } from '../partners/partner-fixtures.js'

const minutesAgo = (m: number) => new Date(Date.now() - m * 60_000)

t.test('listPartnerUsers › valid › pages through the partner\'s own users newest first, with id, email, name and sign-up time only', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, headers } = await f.withKey()
  const ada = await f.member(partner.id, { email: 'ada@school.test', name: 'Ada', createdAt: minutesAgo(3) })
  const bob = await f.member(partner.id, { email: 'bob@school.test', name: 'Bob', createdAt: minutesAgo(2) })
  const cy = await f.member(partner.id, { email: 'cy@school.test', name: 'Cy', createdAt: minutesAgo(1) })
  await f.member(partner.id, { deleted: true })
  await f.member(null)

  const first = await app.inject({ method: 'GET', url: '/v1/partner/users', query: { limit: '2' }, headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().items, [
    { id: cy.id, email: 'cy@school.test', name: 'Cy', createdAt: cy.created_at.toISOString() },
    { id: bob.id, email: 'bob@school.test', name: 'Bob', createdAt: bob.created_at.toISOString() }
  ])
  const second = await app.inject({ method: 'GET', url: '/v1/partner/users', query: { limit: '2', cursor: first.json().nextCursor }, headers })
  t.same(second.json().items.map((u: { id: string }) => u.id), [ada.id])
  t.equal(second.json().nextCursor, null)
  t.equal(first.headers['cache-control'], 'private, no-store')
})

t.test('listPartnerUsers › valid › BOLA: partner A never sees partner B\'s users', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const ofA = await f.member(a.partner.id)
  const ofB = await f.member(b.partner.id)
  const seenByA = await app.inject({ method: 'GET', url: '/v1/partner/users', headers: a.headers })
  t.same(seenByA.json().items.map((u: { id: string }) => u.id), [ofA.id])
  const seenByB = await app.inject({ method: 'GET', url: '/v1/partner/users', headers: b.headers })
  t.same(seenByB.json().items.map((u: { id: string }) => u.id), [ofB.id])
})

t.test('listPartnerUsers › invalid input › bad limits and cursors are 400', async (t) => {
  const app = await fileApp()
  const { headers } = await partners(app).withKey()
  const queries: Array<Record<string, string>> = [{ limit: '0' }, { limit: 'all' }, { cursor: '***' }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: '/v1/partner/users', query, headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.equal(res.json().code, 'validation_failed')
  }
  const forged = await app.inject({ method: 'GET', url: '/v1/partner/users', query: { cursor: Buffer.from('x|y').toString('base64url') }, headers })
  t.equal(forged.json().code, 'bad_request')
})
