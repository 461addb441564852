// A deprecated operation (`deprecated: true` in the spec) tells every caller when it was deprecated and
// when it goes: RFC 9745 `Deprecation` and RFC 8594 `Sunset` on every answer, errors included.
import t from 'tap'
import { appWithSpec, type Document } from '../helpers/app-with-spec.js'
import { build } from '../helpers/build.js'

const listRegions = (d: Document) => d.paths['/v1/regions'].get

t.test('deprecation › valid › a deprecated operation answers with Deprecation, Sunset and a Link to the docs', async (t) => {
  const app = await appWithSpec(t, (d) => Object.assign(listRegions(d), { deprecated: true, 'x-deprecated-at': '2026-11-01', 'x-sunset': '2027-06-30' }))
  const res = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(res.statusCode, 200)
  t.equal(res.headers.deprecation, `@${Date.UTC(2026, 10, 1) / 1000}`)
  t.equal(res.headers.sunset, 'Wed, 30 Jun 2027 00:00:00 GMT')
  t.match(res.headers.link, /<\/docs>; rel="deprecation"/)
  const bad = await app.inject({ method: 'GET', url: '/v1/regions?limit=nope' })
  t.equal(bad.headers.sunset, 'Wed, 30 Jun 2027 00:00:00 GMT', 'errors too: a caller sees it whatever it sent')
})

t.test('deprecation › valid › operations that are not deprecated carry no such headers', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(res.headers.deprecation, undefined)
  t.equal(res.headers.sunset, undefined)
})

t.test('deprecation › invalid input › start-up refuses a deprecated operation without dates, or a sunset before it', async (t) => {
  await t.rejects(appWithSpec(t, (d) => { listRegions(d).deprecated = true }), /operation listRegions is deprecated: it needs x-deprecated-at and a later x-sunset/)
  await t.rejects(appWithSpec(t, (d) => Object.assign(listRegions(d), { deprecated: true, 'x-deprecated-at': '2027-01-01', 'x-sunset': '2026-01-01' })), /later x-sunset/)
})
