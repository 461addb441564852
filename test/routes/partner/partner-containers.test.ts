import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { partners } from '../partners/partner-fixtures.js'

t.test('listPartnerContainers › valid › the running containers of the partner\'s users, newest first, without connection details', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, headers } = await f.withKey()
  const offer = await given(app).offer()
  const ada = await f.member(partner.id, { email: 'ada@school.test' })
  const bob = await f.member(partner.id)
  const handedOver = new Date(Date.now() - 600_000)
  const inUse = await f.container(ada.id, offer, 'in_use', handedOver)
  const starting = await f.container(bob.id, offer, 'starting', null)
  await f.container(ada.id, offer, 'stopped')
  await f.container(bob.id, offer, 'failed')
  await app.db.updateTable('container').set({ created_at: new Date(Date.now() - 60_000) }).where('id', '=', inUse.id).execute()

  const first = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { limit: '1' }, headers })
  t.equal(first.statusCode, 200)
  t.same(first.json().items, [{
    id: starting.id,
    user: { id: bob.id, email: bob.email },
    app: offer.app,
    region: offer.region,
    state: 'starting',
    startedAt: starting.created_at.toISOString()
  }])
  const second = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { limit: '1', cursor: first.json().nextCursor }, headers })
  t.same(second.json().items, [{ id: inUse.id, user: { id: ada.id, email: 'ada@school.test' }, app: offer.app, region: offer.region, state: 'in_use', startedAt: handedOver.toISOString() }])
  t.equal(second.json().nextCursor, null)
  const body = first.body + second.body
  t.notOk(body.includes(inUse.aes_key), 'no AES key')
  t.notOk(body.includes(inUse.secret_hash), 'no secret')
  t.notOk(body.includes('198.51.100.7'), 'no address')

  const onlyAda = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { user: ada.id }, headers })
  t.same(onlyAda.json().items.map((c: { id: string }) => c.id), [inUse.id])
})

t.test('listPartnerContainers › valid › one of the partner\'s users without running containers: an empty page', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const { partner, headers } = await f.withKey()
  const offer = await given(app).offer()
  const ada = await f.member(partner.id)
  await f.container(ada.id, offer, 'stopped')
  const res = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { user: ada.id }, headers })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { items: [], nextCursor: null })
  const withCursor = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { user: ada.id, cursor: Buffer.from(`${new Date().toISOString()}|${ada.id}`).toString('base64url') }, headers })
  t.same(withCursor.json(), { items: [], nextCursor: null }, 'past the last page: still theirs, still empty')
})

t.test('listPartnerContainers › valid › BOLA: partner A never sees partner B\'s containers, nor unassigned ones', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const offer = await given(app).offer()
  const ofA = await f.member(a.partner.id)
  const ofB = await f.member(b.partner.id)
  const loner = await f.member(null)
  const mine = await f.container(ofA.id, offer)
  await f.container(ofB.id, offer)
  await f.container(loner.id, offer)
  await given(app).warmContainer(offer)
  const res = await app.inject({ method: 'GET', url: '/v1/partner/containers', headers: a.headers })
  t.same(res.json().items.map((c: { id: string }) => c.id), [mine.id])
})

t.test('listPartnerContainers › invalid input › bad users, limits and cursors are 400', async (t) => {
  const app = await fileApp()
  const { headers } = await partners(app).withKey()
  const queries: Array<Record<string, string>> = [{ user: 'me' }, { limit: '1000' }, { cursor: '#' }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: '/v1/partner/containers', query, headers })
    t.equal(res.statusCode, 400, JSON.stringify(query))
  }
})

t.test('listPartnerContainers › non-existing › an unknown user, or another partner\'s, is a 404 (the same answer)', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const a = await f.withKey()
  const b = await f.withKey()
  const offer = await given(app).offer()
  const ofB = await f.member(b.partner.id)
  const theirs = await f.container(ofB.id, offer)
  const crossed = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { user: ofB.id }, headers: a.headers })
  const unknown = await app.inject({ method: 'GET', url: '/v1/partner/containers', query: { user: '00000000-0000-4000-8000-000000000000' }, headers: a.headers })
  for (const res of [crossed, unknown]) {
    t.equal(res.statusCode, 404)
    t.equal(res.json().code, 'not_found')
  }
  t.notOk(crossed.body.includes(theirs.id))
})

t.test('listPartnerContainers › insufficient permissions › no key or an expired one 401, a key without partner:read 403, a user token 401', async (t) => {
  const app = await fileApp()
  const f = partners(app)
  const partner = await f.partner()
  const expired = await f.key(partner.id, { expiresAt: new Date(Date.now() - 1) })
  const scopeless = await f.key(partner.id, { scopes: [] })
  const url = '/v1/partner/containers'
  t.equal((await app.inject({ method: 'GET', url })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url, headers: expired.headers })).statusCode, 401)
  t.equal((await app.inject({ method: 'GET', url, headers: scopeless.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url, headers: bearer(await given(app).token({ scopes: ['containers'] })) })).statusCode, 401)
})
