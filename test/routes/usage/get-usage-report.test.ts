import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { plan } from '../catalog/catalog-admin-fixtures.js'
import { usageOf } from './usage-fixtures.js'

type App = Awaited<ReturnType<typeof build>>
const november = { from: '2026-11-01T00:00:00Z', to: '2026-12-01T00:00:00Z' }
const report = (app: App, query: Record<string, string>, headers: Record<string, string>) =>
  app.inject({ method: 'GET', url: '/v1/admin/usage', query, headers })

/** Two users, two apps, two regions, one plan; one record outside November. */
async function arrange (app: App) {
  const [east, west] = [await given(app).region(), await given(app).region()]
  const chrome = await given(app).app({ name: 'Chrome', regions: [east.code, west.code] })
  const figma = await given(app).app({ name: 'Figma', regions: [east.code] })
  const [ada, bob] = [await given(app).user({ email: `ada-${Date.now()}@example.test` }), await given(app).user()]
  const pro = await plan(app)
  const u = usageOf(app)
  await u.record({ userId: ada.id, app: chrome.id, region: east.code, seconds: 3600, endedAt: '2026-11-01T00:00:00Z', planId: pro })
  await u.record({ userId: ada.id, app: figma.id, region: east.code, seconds: 1800, endedAt: '2026-11-15T10:00:00Z', planId: pro })
  await u.record({ userId: bob.id, app: chrome.id, region: west.code, seconds: 900, endedAt: '2026-11-30T23:59:59Z', planId: null })
  await u.record({ userId: bob.id, app: chrome.id, region: west.code, seconds: 7200, endedAt: '2026-12-01T00:00:00Z', planId: null }) // December
  return { east, west, chrome, figma, ada, bob, pro }
}

t.test('getUsageReport › valid › groups a period\'s usage by app, region, plan and user, with totals over all', async (t) => {
  const app = await build(t)
  const admin = bearer(await given(app).token({ role: 'admin', scopes: ['admin'] }))
  const { east, west, chrome, figma, ada, bob, pro } = await arrange(app)
  const totals = { users: 2, containers: 3, seconds: 6300, hours: 1.75 }

  const byApp = await report(app, { ...november, groupBy: 'app' }, admin)
  t.equal(byApp.statusCode, 200)
  t.same(byApp.json(), {
    from: '2026-11-01T00:00:00.000Z',
    to: '2026-12-01T00:00:00.000Z',
    groupBy: 'app',
    totals,
    items: [
      { key: chrome.id, label: 'Chrome', users: 2, containers: 2, seconds: 4500, hours: 1.25 },
      { key: figma.id, label: 'Figma', users: 1, containers: 1, seconds: 1800, hours: 0.5 }
    ].sort((a, b) => a.key < b.key ? -1 : 1),
    nextCursor: null
  })
  const byRegion = (await report(app, { ...november, groupBy: 'region' }, admin)).json()
  t.same(Object.fromEntries(byRegion.items.map((i: { key: string, seconds: number }) => [i.key, i.seconds])), { [east.code]: 5400, [west.code]: 900 })
  const byPlan = (await report(app, { ...november, groupBy: 'plan' }, admin)).json()
  t.same(byPlan.items.map((i: { key: string | null, label: string | null, seconds: number }) => [i.key, i.label, i.seconds]), [[null, null, 900], [pro, `Plan ${pro}`, 5400]], 'no plan first')
  const byUser = (await report(app, { ...november, groupBy: 'user' }, admin)).json()
  t.same(Object.fromEntries(byUser.items.map((i: { label: string, seconds: number }) => [i.label, i.seconds])), { [ada.email]: 5400, [bob.email]: 900 })
  for (const r of [byRegion, byPlan, byUser]) t.same(r.totals, totals)
})

t.test('getUsageReport › valid › Accept: text/csv answers the page as CSV, paginated with Link rel=next', async (t) => {
  const app = await build(t)
  const admin = bearer(await given(app).token({ role: 'admin', scopes: ['admin'] }))
  const { chrome, figma } = await arrange(app)
  await app.db.updateTable('app').set({ name: 'Figma, "Pro"' }).where('id', '=', figma.id).execute()
  const [first, second] = [chrome, figma].sort((a, b) => a.id < b.id ? -1 : 1)
  const line = (a: typeof chrome) => a.id === chrome.id ? `${chrome.id},Chrome,2,2,4500,1.25` : `${figma.id},"Figma, ""Pro""",1,1,1800,0.5`

  const page1 = await report(app, { ...november, groupBy: 'app', limit: '1' }, { ...admin, accept: 'text/csv' })
  t.equal(page1.statusCode, 200)
  t.match(page1.headers['content-type'], /^text\/csv/)
  t.equal(page1.body, `key,label,users,containers,seconds,hours\r\n${line(first!)}\r\n`)
  const link = /^<([^>]+)>; rel="next"$/.exec(String(page1.headers.link))
  t.ok(link, 'a Link to the next page')
  const page2 = await app.inject({ method: 'GET', url: link![1]!, headers: { ...admin, accept: 'text/csv' } })
  t.equal(page2.body, `key,label,users,containers,seconds,hours\r\n${line(second!)}\r\n`)
  t.notOk(page2.headers.link, 'the last page links nowhere')

  const json = await report(app, { ...november, groupBy: 'app', limit: '1' }, { ...admin, accept: 'application/json, text/csv;q=0.5' })
  t.match(json.headers['content-type'], /^application\/json/, 'JSON when preferred')
  t.type(json.json().nextCursor, 'string')
})

t.test('getUsageReport › valid › the partner usage and the report count the same records', async (t) => {
  const app = await build(t)
  const admin = bearer(await given(app).token({ role: 'admin', scopes: ['admin'] }))
  const { ada } = await arrange(app)
  const byUser = (await report(app, { ...november, groupBy: 'user' }, admin)).json()
  const partner = await app.db.insertInto('partner').values({ name: `P ${Date.now()}` }).returning('id').executeTakeFirstOrThrow()
  await app.db.updateTable('account').set({ partner_id: partner.id }).where('id', '=', ada.id).execute()
  const { partnerUsage } = await import('../../../services/partners/partners.service.js')
  const theirs = await partnerUsage(app.db, partner.id, { limit: 10, month: '2026-11' })
  t.equal(theirs.totals.seconds, byUser.items.find((i: { key: string }) => i.key === ada.id).seconds)
})

t.test('getUsageReport › insufficient permissions › 401 without a valid token, 403 without the admin scope', async (t) => {
  const app = await build(t)
  const query = { ...november, groupBy: 'app' }
  t.equal((await report(app, query, {})).statusCode, 401)
  t.equal((await report(app, query, bearer('garbage'))).statusCode, 401)
  for (const role of ['user', 'developer'] as const) {
    const res = await report(app, query, (await given(app).signedIn({ role })).headers)
    t.equal(res.statusCode, 403, role)
    t.equal(res.json().code, 'forbidden')
  }
})

t.test('getUsageReport › invalid input › malformed queries are 400, a backwards or too long period 422', async (t) => {
  const app = await build(t)
  const admin = bearer(await given(app).token({ role: 'admin', scopes: ['admin'] }))
  const cases: Array<[string, Record<string, string>, string]> = [
    ['no groupBy', { ...november }, '/query/groupBy'],
    ['unknown groupBy', { ...november, groupBy: 'country' }, '/query/groupBy'],
    ['from not a date', { ...november, from: 'yesterday', groupBy: 'app' }, '/query/from'],
    ['no to', { from: november.from, groupBy: 'app' }, '/query/to']
  ]
  for (const [name, query, field] of cases) {
    const res = await report(app, query, admin)
    t.equal(res.statusCode, 400, name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  const cursor = await report(app, { ...november, groupBy: 'app', cursor: 'bm90fGF8Y3Vyc29y' }, admin)
  t.equal(cursor.statusCode, 400, 'a cursor this API did not make')
  for (const [name, query] of [['to before from', { from: november.to, to: november.from }], ['over 366 days', { from: '2025-01-01T00:00:00Z', to: '2026-12-01T00:00:00Z' }]] as const) {
    const res = await report(app, { ...query, groupBy: 'app' }, admin)
    t.equal(res.statusCode, 422, name)
    t.equal(res.json().errors[0].field, '/query/to')
  }
  const leap = await report(app, { from: '2026-12-31T23:59:60Z', to: november.to, groupBy: 'app' }, admin)
  t.equal(leap.statusCode, 422, 'a leap second: valid as a format, not a time Date can place')
  t.equal(leap.json().errors[0].field, '/query/from')
})

t.test('getUsageReport › non-existing › a period without usage is an empty report, not a 404', async (t) => {
  const app = await build(t)
  const admin = bearer(await given(app).token({ role: 'admin', scopes: ['admin'] }))
  const res = await report(app, { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z', groupBy: 'user' }, admin)
  t.equal(res.statusCode, 200)
  t.same(res.json().items, [])
  t.same(res.json().totals, { users: 0, containers: 0, seconds: 0, hours: 0 })
  const csv = await report(app, { from: '2001-01-01T00:00:00Z', to: '2001-02-01T00:00:00Z', groupBy: 'user' }, { ...admin, accept: 'text/csv' })
  t.equal(csv.body, 'key,label,users,containers,seconds,hours\r\n', 'the header row alone')
})
