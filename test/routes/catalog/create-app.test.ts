import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { auditOf, garbage, operator, plan, purges } from './catalog-admin-fixtures.js'

type App = Awaited<ReturnType<typeof build>>
const create = (app: App, body: unknown, headers: Record<string, string>) =>
  app.inject({ method: 'POST', url: '/v1/admin/apps', payload: body as object, headers })
const krita = (extra: object = {}) => ({ id: 'krita', name: 'Krita', description: 'Digital painting.', iconUrl: 'https://cdn.example.test/krita.svg', category: 'design', ...extra })

t.test('createApp › valid › adds the app with its plans and DPI default, audited, and purges app reads', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const pro = await plan(app)

  const res = await create(app, krita({ dpiDefault: 144, plans: [pro] }), op.headers)

  t.equal(res.statusCode, 201)
  t.equal(res.headers.location, '/v1/admin/apps/krita')
  t.match(res.json(), { id: 'krita', name: 'Krita', category: 'design', dpiDefault: 144, enabled: true, plans: [pro], regions: [] })
  const audit = await auditOf(app, 'app.created', 'krita')
  t.equal(audit.length, 1)
  t.equal(audit[0]!.actor_id, op.id)
  t.equal(await purges(app), 1, 'a purge of the app reads waits for the worker')
  const read = await app.inject({ method: 'GET', url: '/v1/apps/krita' })
  t.equal(read.statusCode, 200, 'the public read has it')
  t.same(read.json().regions, [], 'offered nowhere yet')
})

t.test('createApp › valid › a disabled new app is not in the public catalog', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  t.equal((await create(app, krita({ enabled: false }), op.headers)).statusCode, 201)
  t.equal((await app.inject({ method: 'GET', url: '/v1/apps/krita' })).statusCode, 404)
})

t.test('createApp › insufficient permissions › 401 without a valid token, 403 without catalog:write; nothing added', async (t) => {
  const app = await build(t)
  t.equal((await create(app, krita(), {})).statusCode, 401)
  t.equal((await create(app, krita(), garbage)).statusCode, 401)
  const user = await given(app).signedIn()
  const res = await create(app, krita(), user.headers)
  t.equal(res.statusCode, 403)
  t.equal(res.json().code, 'forbidden')
  t.notOk(await app.db.selectFrom('app').select('id').where('id', '=', 'krita').executeTakeFirst())
})

t.test('createApp › invalid input › malformed fields are 400, unknown plans 422, a taken id 409; nothing written', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const cases: Array<[string, unknown, string]> = [
    ['missing name', { ...krita(), name: undefined }, '/body/name'],
    ['bad id', krita({ id: 'Not An Id' }), '/body/id'],
    ['unknown category', krita({ category: 'games' }), '/body/category'],
    ['icon not https', krita({ iconUrl: 'http://cdn.example.test/k.svg' }), '/body/iconUrl'],
    ['dpi too low', krita({ dpiDefault: 10 }), '/body/dpiDefault'],
    ['unknown field', krita({ task_definition: 'x' }), '/body/task_definition']
  ]
  for (const [name, body, field] of cases) {
    const res = await create(app, body, op.headers)
    t.equal(res.statusCode, 400, name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  const unknownPlan = await create(app, krita({ plans: ['no-such-plan'] }), op.headers)
  t.equal(unknownPlan.statusCode, 422)
  t.same(unknownPlan.json().errors, [{ field: '/body/plans', message: 'names a plan that does not exist' }])
  t.notOk(await app.db.selectFrom('app').select('id').where('id', '=', 'krita').executeTakeFirst(), 'nothing added')

  await given(app).app({ id: 'taken' })
  const taken = await create(app, krita({ id: 'taken' }), op.headers)
  t.equal(taken.statusCode, 409)
  t.equal(taken.json().code, 'conflict')
  t.equal(await purges(app), 0, 'nothing purged')
})

t.test('createApp › non-existing › a plan that does not exist is refused (422), the app is not created', async (t) => {
  const app = await build(t)
  const op = await operator(app)
  const pro = await plan(app)
  const res = await create(app, krita({ plans: [pro, 'gone'] }), op.headers)
  t.equal(res.statusCode, 422)
  t.match(res.json().detail, /gone/)
  t.notOk(await app.db.selectFrom('app').select('id').where('id', '=', 'krita').executeTakeFirst())
})
