import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { plan } from './catalog-admin-fixtures.js'

t.test('getApp › valid › returns the app with its regions', async (t) => {
  const app = await fileApp()
  const region = await given(app).region({ code: 'ap-south-9' })
  await given(app).app({ id: 'figma', name: 'Figma', category: 'design', regions: [region.code] })

  const res = await app.inject({ method: 'GET', url: '/v1/apps/figma' })

  t.equal(res.statusCode, 200)
  t.same(res.json(), { id: 'figma', name: 'Figma', description: 'The figma app', iconUrl: 'https://cdn.example.test/figma.svg', category: 'design', regions: ['ap-south-9'], plans: [] })
  t.ok(res.headers.etag)
})

t.test('getApp › valid › the plans that include the app, so a client can say which plan it needs', async (t) => {
  const app = await fileApp()
  const region = await given(app).region()
  const offered = await given(app).app({ regions: [region.code] })
  const [b, a] = [await plan(app, `b-${offered.id}`), await plan(app, `a-${offered.id}`)]
  await app.db.insertInto('plan_app').values([{ plan_id: b, app_id: offered.id }, { plan_id: a, app_id: offered.id }]).execute()

  const one = await app.inject({ method: 'GET', url: `/v1/apps/${offered.id}` })
  t.same(one.json().plans, [a, b], 'by id')
  const listed = await app.inject({ method: 'GET', url: `/v1/apps?region=${region.code}` })
  t.same(listed.json().items.map((a: { id: string, plans: string[] }) => [a.id, a.plans]), [[offered.id, [a, b]]])
})

t.test('getApp › invalid input › an id that cannot be an app id is a 400', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/apps/NOT_AN_ID' })
  t.equal(res.statusCode, 400)
  t.equal(res.json().errors[0].field, '/params/appId')
})

t.test('getApp › non-existing › 404 not_found problem', async (t) => {
  const app = await fileApp()
  const res = await app.inject({ method: 'GET', url: '/v1/apps/figma2' })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(res.json(), { code: 'not_found', status: 404, title: 'App not found', detail: 'App figma2 does not exist.', instance: '/v1/apps/figma2' })
})
