import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

t.test('listRegions › valid › lists every region in display order with its location', async (t) => {
  const app = await build(t)
  await given(app).region({ code: 'eu-west-9', name: 'Europe (Test)', sortOrder: 2 })
  await given(app).region({ code: 'us-east-9', name: 'US (Test)', sortOrder: 1, enabled: false })

  const res = await app.inject({ method: 'GET', url: '/v1/regions' })

  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^application\/json/)
  const body = res.json()
  t.same(body.items.map((r: { code: string }) => r.code), ['us-east-9', 'eu-west-9'])
  t.same(body.items[0], { code: 'us-east-9', name: 'US (Test)', enabled: false, location: { latitude: 10, longitude: 20 } })
})

t.test('listRegions › valid › is edge-cacheable with a strong ETag and answers 304 to If-None-Match', async (t) => {
  const app = await fileApp()
  await given(app).region()

  const first = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(first.headers['cache-control'], 'public, max-age=60, s-maxage=300, stale-while-revalidate=60, stale-if-error=86400')
  t.equal(first.headers['cdn-cache-control'], 'max-age=300, stale-while-revalidate=60, stale-if-error=86400')
  t.match(first.headers.vary, /Accept-Encoding/)
  const etag = first.headers.etag as string
  t.match(etag, /^"[A-Za-z0-9_-]+"$/, 'a strong validator (no W/)')

  const again = await app.inject({ method: 'GET', url: '/v1/regions', headers: { 'if-none-match': etag } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')
  t.equal(again.headers.etag, etag)

  await given(app).region()
  const changed = await app.inject({ method: 'GET', url: '/v1/regions', headers: { 'if-none-match': etag } })
  t.equal(changed.statusCode, 200, 'a changed list gets a new representation')
  t.not(changed.headers.etag, etag)
})

t.test('listRegions › rate limit › the 601st request in a minute gets a 429 problem with Retry-After', async (t) => {
  const app = await fileApp()
  let last
  for (let i = 0; i < 601; i++) last = await app.inject({ method: 'GET', url: '/v1/regions', remoteAddress: '203.0.113.7' })
  t.equal(last!.statusCode, 429)
  t.match(last!.headers['content-type'], /^application\/problem\+json/)
  t.equal(last!.json().code, 'rate_limited')
  t.ok(Number(last!.headers['retry-after']) > 0)
  t.equal(last!.headers['cache-control'], 'no-store')
  const other = await app.inject({ method: 'GET', url: '/v1/regions', remoteAddress: '203.0.113.8' })
  t.equal(other.statusCode, 200, 'another client is not limited')
})
