import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'

// POST /v1/containers declares `x-rate-limit: { max: 60, timeWindow: 1 minute, key: user }`.
t.test('rate limits › key: user › one user is limited across addresses; another user on the same address is not', async (t) => {
  const app = await build(t, { TRUST_PROXY: '127.0.0.1' })
  const offer = await given(app).offer()
  const busy = await given(app).signedIn()
  const other = await given(app).signedIn()
  const assign = (headers: Record<string, string>, ip: string) => app.inject({
    method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...headers, 'idempotency-key': randomUUID(), 'x-forwarded-for': ip }
  })

  const statuses: number[] = []
  for (let i = 0; i < 60; i++) statuses.push((await assign(busy.headers, `10.9.${i >> 8}.${i & 255}`)).statusCode)
  t.notOk(statuses.includes(429), 'sixty requests from sixty addresses pass the limiter')
  const limited = await assign(busy.headers, '10.99.0.1')
  t.equal(limited.statusCode, 429, 'the 61st of the same user is limited, whatever its address')
  t.match(limited.headers['content-type'], /application\/problem\+json/)
  t.ok(Number(limited.headers['retry-after']) > 0)

  const neighbour = await assign(other.headers, '10.9.0.1')
  t.equal(neighbour.statusCode, 202, 'another user from an address the first one used is not limited')
  const anonymous = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { 'idempotency-key': randomUUID(), 'x-forwarded-for': '10.9.0.2' } })
  t.equal(anonymous.statusCode, 401, 'no token: counted per address, then refused by the security handler')
})
