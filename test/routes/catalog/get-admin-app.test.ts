import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { garbage, operator, plan } from './catalog-admin-fixtures.js'

type App = Awaited<ReturnType<typeof build>>
const read = (app: App, id: string, headers: Record<string, string>) => app.inject({ method: 'GET', url: `/v1/admin/apps/${id}`, headers })

t.test('getAdminApp › valid › a disabled app with its plans, and per region its task definition, enabled or not', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const on = await given(app).region()
  const off = await given(app).region()
  const row = await given(app).app({ regions: [on.code, off.code] })
  const pro = await plan(app)
  await app.db.updateTable('app').set({ enabled: false, dpi_default: 192 }).where('id', '=', row.id).execute()
  await app.db.updateTable('app_region').set({ enabled: false, task_definition: 'fractal-x' }).where('app_id', '=', row.id).where('region_code', '=', off.code).execute()
  await app.db.insertInto('plan_app').values({ plan_id: pro, app_id: row.id }).execute()

  const res = await read(app, row.id, op.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  const body = res.json()
  t.match(body, { id: row.id, enabled: false, dpiDefault: 192, plans: [pro] })
  const byRegion = Object.fromEntries(body.regions.map((r: { region: string }) => [r.region, r]))
  t.same(byRegion[on.code], { region: on.code, enabled: true, taskDefinition: { family: `fractal-${row.id}`, revision: 1 }, warmPoolTarget: 0 })
  t.same(byRegion[off.code], { region: off.code, enabled: false, taskDefinition: { family: 'fractal-x', revision: null }, warmPoolTarget: 0 })
})

t.test('getAdminApp › insufficient permissions › 401 without a valid token, 403 for a user', async (t) => {
  const app = await build(t)
  const row = await given(app).app()
  t.equal((await read(app, row.id, {})).statusCode, 401)
  t.equal((await read(app, row.id, garbage)).statusCode, 401)
  const res = await read(app, row.id, (await given(app).signedIn()).headers)
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'forbidden')
})

t.test('getAdminApp › invalid input › a malformed app id is a 400 naming it', async (t) => {
  const app = await build(t)
  const res = await read(app, 'Bad_Id', (await operator(app)).headers)
  t.equal(res.statusCode, 400)
  t.equal(res.json().errors[0].field, '/params/appId')
})

t.test('getAdminApp › non-existing › 404 not_found', async (t) => {
  const app = await build(t)
  const res = await read(app, 'no-such-app', (await operator(app)).headers)
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})
