import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { auditOf, garbage, operator, purges } from './catalog-admin-fixtures.js'

type App = Awaited<ReturnType<typeof build>>
const put = (app: App, appId: string, region: string, body: unknown, headers: Record<string, string>) =>
  app.inject({ method: 'PUT', url: `/v1/admin/apps/${appId}/regions/${region}`, payload: body as object, headers })
// The simulated cloud's task definitions in these tests.
const cloud = { SIMULATED_TASK_DEFINITIONS: 'fractal-krita:1,fractal-krita:2,fractal-krita:5' }

t.test('setAppRegion › valid › offers the app in a region on a pinned revision, audited, purging app reads', async (t) => {
  const app = await build(t, cloud)
  const op = await operator(app)
  const region = await given(app).region()
  const row = await given(app).app()

  const res = await put(app, row.id, region.code, { taskDefinition: { family: 'fractal-krita', revision: 2 } }, op.headers)

  t.equal(res.statusCode, 200)
  t.same(res.json().regions, [{ region: region.code, enabled: true, taskDefinition: { family: 'fractal-krita', revision: 2 }, warmPoolTarget: 0 }])
  const stored = await app.db.selectFrom('app_region').select('task_definition').where('app_id', '=', row.id).executeTakeFirstOrThrow()
  t.equal(stored.task_definition, 'fractal-krita:2', 'what RunTask is given')
  const [audit] = await auditOf(app, 'app.region_set', row.id)
  t.match(audit?.details, { region: region.code, taskDefinition: 'fractal-krita:2', resolvedRevision: 2, before: null })
  t.equal(await purges(app), 1)
  t.same((await app.inject({ method: 'GET', url: `/v1/apps/${row.id}` })).json().regions, [region.code], 'the public read offers it there')
})

t.test('setAppRegion › valid › latest (revision null) is stored as the family; a new revision leaves the containers in use alone', async (t) => {
  const app = await build(t, cloud)
  const op = await operator(app)
  const { offer, container } = await given(app).assignedContainer()
  await app.db.updateTable('app_region').set({ warm_pool_target: 3 }).where('app_id', '=', offer.app).execute()

  const res = await put(app, offer.app, offer.region, { taskDefinition: { family: 'fractal-krita', revision: null } }, op.headers)

  t.equal(res.statusCode, 200)
  t.same(res.json().regions[0], { region: offer.region, enabled: true, taskDefinition: { family: 'fractal-krita', revision: null }, warmPoolTarget: 3 }, 'the warm-pool target is kept')
  const [audit] = await auditOf(app, 'app.region_set', offer.app)
  t.match(audit?.details, { taskDefinition: 'fractal-krita', resolvedRevision: 5, before: { taskDefinition: `fractal-${offer.app}:1` } })
  const held = await app.db.selectFrom('container').select('state').where('id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(held.state, 'in_use', 'not stopped')
})

t.test('setAppRegion › valid › enabled: false stops offering the app there (no new container, no warm pool), the setting kept', async (t) => {
  const app = await build(t, cloud)
  const op = await operator(app)
  const offer = await given(app).offer()

  const res = await put(app, offer.app, offer.region, { taskDefinition: { family: 'fractal-krita', revision: 1 }, enabled: false }, op.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.json().regions[0].enabled, false)
  t.same((await app.inject({ method: 'GET', url: `/v1/apps/${offer.app}` })).json().regions, [])
  const user = await given(app).signedIn()
  const refused = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app, region: offer.region }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(refused.statusCode, 404, 'not offered there')
  t.equal(refused.json().code, 'not_found')
  await app.db.updateTable('app_region').set({ warm_pool_target: 2 }).where('app_id', '=', offer.app).execute()
  await app.schedules.runOnce('warm-pools')
  const started = await app.db.selectFrom('container').select('id').where('app_id', '=', offer.app).execute()
  t.same(started, [], 'the warm pool is not refilled there')
})

t.test('setAppRegion › insufficient permissions › 401 without a valid token, 403 for a user; nothing set', async (t) => {
  const app = await build(t, cloud)
  const region = await given(app).region()
  const row = await given(app).app()
  const body = { taskDefinition: { family: 'fractal-krita', revision: 1 } }
  t.equal((await put(app, row.id, region.code, body, {})).statusCode, 401)
  t.equal((await put(app, row.id, region.code, body, garbage)).statusCode, 401)
  const res = await put(app, row.id, region.code, body, (await given(app).signedIn()).headers)
  t.equal(res.statusCode, 403)
  t.notOk(await app.db.selectFrom('app_region').select('app_id').where('app_id', '=', row.id).executeTakeFirst())
})

t.test('setAppRegion › invalid input › malformed task definitions are 400; one the cloud does not have is 422; nothing set', async (t) => {
  const app = await build(t, cloud)
  const op = await operator(app)
  const region = await given(app).region()
  const row = await given(app).app()
  const cases: Array<[string, unknown, string]> = [
    ['no task definition', {}, '/body/taskDefinition'],
    ['revision zero', { taskDefinition: { family: 'fractal-krita', revision: 0 } }, '/body/taskDefinition/revision'],
    ['revision missing', { taskDefinition: { family: 'fractal-krita' } }, '/body/taskDefinition/revision'],
    ['family with a colon', { taskDefinition: { family: 'fractal:krita', revision: 1 } }, '/body/taskDefinition/family']
  ]
  for (const [name, body, field] of cases) {
    const res = await put(app, row.id, region.code, body, op.headers)
    t.equal(res.statusCode, 400, name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  for (const taskDefinition of [{ family: 'fractal-krita', revision: 3 }, { family: 'fractal-unknown', revision: null }]) {
    const res = await put(app, row.id, region.code, { taskDefinition }, op.headers)
    t.equal(res.statusCode, 422, `${taskDefinition.family}:${taskDefinition.revision} is unknown to the cloud`)
    t.same(res.json().errors, [{ field: '/body/taskDefinition', message: 'is not a task definition the cloud has' }])
  }
  t.notOk(await app.db.selectFrom('app_region').select('app_id').where('app_id', '=', row.id).executeTakeFirst())
  t.equal(await purges(app), 0)
})

t.test('setAppRegion › non-existing › an unknown app or region is 404', async (t) => {
  const app = await build(t, cloud)
  const op = await operator(app)
  const region = await given(app).region()
  const row = await given(app).app()
  const body = { taskDefinition: { family: 'fractal-krita', revision: 1 } }
  const noApp = await put(app, 'no-such-app', region.code, body, op.headers)
  t.equal(noApp.statusCode, 404)
  t.match(noApp.json(), { code: 'not_found', detail: 'App no-such-app does not exist.' })
  const noRegion = await put(app, row.id, 'zz-nowhere-1', body, op.headers)
  t.equal(noRegion.statusCode, 404)
  t.match(noRegion.json(), { code: 'not_found', detail: 'Region zz-nowhere-1 does not exist.' })
})
