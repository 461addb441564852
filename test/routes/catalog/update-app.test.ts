import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { auditOf, garbage, operator, plan, purges } from './catalog-admin-fixtures.js'

type App = Awaited<ReturnType<typeof build>>
const update = (app: App, id: string, body: unknown, headers: Record<string, string>) =>
  app.inject({ method: 'PATCH', url: `/v1/admin/apps/${id}`, payload: body as object, headers })

t.test('updateApp › valid › changes fields and replaces plans, audited with the previous values, and purges app reads', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const row = await given(app).app()
  const [basic, pro] = [await plan(app), await plan(app)]
  await app.db.insertInto('plan_app').values({ plan_id: basic, app_id: row.id }).execute()

  const res = await update(app, row.id, { name: 'Renamed', dpiDefault: 144, plans: [pro] }, op.headers)

  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: row.id, name: 'Renamed', dpiDefault: 144, plans: [pro], enabled: true })
  const [audit] = await auditOf(app, 'app.updated', row.id)
  t.match(audit?.details, { changes: { name: 'Renamed', dpiDefault: 144, plans: [pro] }, before: { name: row.name, dpiDefault: 96, plans: [basic] } })
  t.equal(await purges(app), 1)
  t.equal((await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })).json().name, 'Renamed')
})

t.test('updateApp › valid › a disabled app leaves the catalog and starts no container; the one in use keeps running', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const { offer, container, user } = await given(app).assignedContainer()

  const res = await update(app, offer.app, { enabled: false }, op.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.json().enabled, false)
  t.equal((await auditOf(app, 'app.disabled', offer.app)).length, 1)
  t.equal((await app.inject({ method: 'GET', url: `/v1/apps/${offer.app}` })).statusCode, 404, 'its public page is gone')
  const listed = await app.inject({ method: 'GET', url: '/v1/apps', query: { limit: '100', region: offer.region } })
  t.notOk(listed.json().items.some((a: { id: string }) => a.id === offer.app), 'not listed')
  const other = await given(app).signedIn()
  const refused = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...other.headers, 'idempotency-key': randomUUID() } })
  t.equal(refused.statusCode, 404, 'no new container of it: not offered')
  const held = await app.db.selectFrom('container').select('state').where('id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(held.state, 'in_use', `${user.account.email}'s container is not stopped`)
})

t.test('updateApp › valid › the DPI default is what a new container starts with', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const offer = await given(app).offer()
  await update(app, offer.app, { dpiDefault: 192 }, op.headers)
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(res.statusCode, 202, 'no warm container: one starts')
  const row = await app.db.selectFrom('container').select('dpi').where('app_id', '=', offer.app).executeTakeFirstOrThrow()
  t.equal(row.dpi, 192)
})

t.test('updateApp › insufficient permissions › 401 without a valid token, 403 for a user; nothing changed', async (t) => {
  const app = await build(t)
  const row = await given(app).app()
  t.equal((await update(app, row.id, { enabled: false }, {})).statusCode, 401)
  t.equal((await update(app, row.id, { enabled: false }, garbage)).statusCode, 401)
  const res = await update(app, row.id, { enabled: false }, (await given(app).signedIn()).headers)
  t.equal(res.statusCode, 403)
  const after = await app.db.selectFrom('app').select('enabled').where('id', '=', row.id).executeTakeFirstOrThrow()
  t.equal(after.enabled, true)
})

t.test('updateApp › invalid input › empty, malformed or unknown fields are 400, an unknown plan 422; nothing changed', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const row = await given(app).app()
  const cases: Array<[string, unknown, string]> = [
    ['empty object', {}, '/body'],
    ['blank name', { name: '   ' }, '/body/name'],
    ['enabled not a boolean', { enabled: 'no' }, '/body/enabled'],
    ['dpi too high', { dpiDefault: 1000 }, '/body/dpiDefault'],
    ['id is not changeable', { id: 'other' }, '/body/id']
  ]
  for (const [name, body, field] of cases) {
    const res = await update(app, row.id, body, op.headers)
    t.equal(res.statusCode, 400, name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  const unknownPlan = await update(app, row.id, { name: 'Never', plans: ['nope'] }, op.headers)
  t.equal(unknownPlan.statusCode, 422)
  t.equal(unknownPlan.json().errors[0].field, '/body/plans')
  const after = await app.db.selectFrom('app').select('name').where('id', '=', row.id).executeTakeFirstOrThrow()
  t.equal(after.name, row.name)
  t.equal(await purges(app), 0)
})

t.test('updateApp › non-existing › 404 not_found, nothing purged', async (t) => {
  const app = await build(t)
  const res = await update(app, 'no-such-app', { enabled: false }, (await operator(app)).headers)
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.equal(await purges(app), 0)
})
