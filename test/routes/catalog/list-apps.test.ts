import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

t.test('listApps › valid › pages through the catalog by id with nextCursor, no app twice', async (t) => {
  const app = await build(t)
  const region = await given(app).region()
  for (const id of ['app-a', 'app-b', 'app-c', 'app-d', 'app-e']) await given(app).app({ id, regions: [region.code] })

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const query: Record<string, string> = cursor ? { limit: '2', cursor } : { limit: '2' }
    const res = await app.inject({ method: 'GET', url: '/v1/apps', query })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.ok(body.items.length <= 2)
    seen.push(...body.items.map((a: { id: string }) => a.id))
    cursor = body.nextCursor
    pages++
  } while (cursor !== null && pages < 10)

  t.same(seen, ['app-a', 'app-b', 'app-c', 'app-d', 'app-e'])
  t.equal(pages, 3)
})

t.test('listApps › valid › shows each app with the enabled regions it is offered in', async (t) => {
  const app = await build(t)
  const on = await given(app).region({ code: 'eu-west-8', sortOrder: 1 })
  const off = await given(app).region({ code: 'us-east-8', enabled: false })
  await given(app).app({ id: 'chrome', name: 'Google Chrome', regions: [on.code, off.code] })

  const res = await app.inject({ method: 'GET', url: '/v1/apps' })

  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    items: [{ id: 'chrome', name: 'Google Chrome', description: 'The chrome app', iconUrl: 'https://cdn.example.test/chrome.svg', category: 'browser', regions: ['eu-west-8'], plans: [] }],
    nextCursor: null
  })
})

t.test('listApps › valid › region keeps the apps offered there', async (t) => {
  const app = await fileApp()
  const a = await given(app).region({ code: 'eu-west-7' })
  const b = await given(app).region({ code: 'us-west-7' })
  await given(app).app({ id: 'only-a', regions: [a.code] })
  await given(app).app({ id: 'only-b', regions: [b.code] })

  const res = await app.inject({ method: 'GET', url: '/v1/apps', query: { region: 'us-west-7' } })

  t.equal(res.statusCode, 200)
  t.same(res.json().items.map((x: { id: string }) => x.id), ['only-b'])
})

t.test('listApps › valid › answers 304 when the page has not changed', async (t) => {
  const app = await fileApp()
  await given(app).app({ id: 'app-etag' })
  const first = await app.inject({ method: 'GET', url: '/v1/apps' })
  const again = await app.inject({ method: 'GET', url: '/v1/apps', headers: { 'if-none-match': first.headers.etag as string } })
  t.equal(again.statusCode, 304)
})

t.test('listApps › invalid input › rejects each malformed parameter with 400 naming it', async (t) => {
  const app = await fileApp()
  const cases: Array<[Record<string, string>, string]> = [
    [{ limit: '0' }, '/query/limit'],
    [{ limit: '101' }, '/query/limit'],
    [{ limit: 'ten' }, '/query/limit'],
    [{ cursor: 'not a cursor!' }, '/query/cursor'],
    [{ region: 'Mars' }, '/query/region']
  ]
  for (const [query, field] of cases) {
    const res = await app.inject({ method: 'GET', url: '/v1/apps', query })
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    const problem = res.json()
    t.equal(problem.code, 'validation_failed')
    t.ok(problem.errors.some((e: { field: string }) => e.field === field), `names ${field}`)
  }
})

t.test('listApps › invalid input › a cursor this API did not issue is a 400 bad_request', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/apps', query: { cursor: Buffer.from('../../etc').toString('base64url') } })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'bad_request')
})

t.test('listApps › non-existing › an unknown region is a 404 not_found', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/apps', query: { region: 'zz-nowhere-1' } })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.match(res.json().detail, /zz-nowhere-1/)
  t.equal(res.headers['cache-control'], 'public, max-age=0, s-maxage=10', 'misses are cached briefly at the edge')
})
