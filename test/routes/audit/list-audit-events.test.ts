// The audit trail: admin actions and security events with actor, target, IP and time; append-only.
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const read = (app: App, token: string, query = '') => app.inject({ method: 'GET', url: `/v1/admin/audit${query}`, headers: bearer(token) })

async function adminOf (app: App) {
  const admin = await given(app).signedIn({ role: 'admin' })
  return { ...admin, token: admin.accessToken }
}

t.test('listAuditEvents › valid › a role change, a maintenance window and a cache purge are there with actor, target, IP and time', async (t) => {
  const app = await build(t, { TRUST_PROXY: '127.0.0.1' })
  const admin = await adminOf(app)
  const user = await given(app).user()
  const from = { ...admin.headers, 'x-forwarded-for': '203.0.113.7', 'user-agent': 'ops-console/1.0' }
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.id}`, payload: { role: 'developer' }, headers: from })).statusCode, 200)
  t.equal((await app.inject({ method: 'PUT', url: '/v1/admin/maintenance', payload: { enabled: true, message: 'Upgrading', minutes: 5 }, headers: from })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/admin/cache/purge', payload: { tags: ['apps'] }, headers: from })).statusCode, 202)

  const res = await read(app, admin.token)
  t.equal(res.statusCode, 200)
  const items = res.json().items as Array<Record<string, any>>
  const byAction = (action: string) => items.find((e) => e.action === action)!
  t.match(byAction('user.role_changed'), { actorId: admin.account.id, targetType: 'account', targetId: user.id, ip: '203.0.113.7', userAgent: 'ops-console/1.0', details: { from: 'user', to: 'developer' } })
  t.match(byAction('maintenance.started'), { actorId: admin.account.id, targetType: 'maintenance', ip: '203.0.113.7', details: { message: 'Upgrading' } })
  t.match(byAction('cache.purged'), { actorId: admin.account.id, ip: '203.0.113.7', details: { tags: ['apps'], everything: false } })
  t.ok(items.every((e) => !Number.isNaN(Date.parse(e.at))))
  const ids = items.map((e) => BigInt(e.id))
  t.ok(ids.every((id, i) => i === 0 || id < ids[i - 1]!), 'newest first')
})

t.test('listAuditEvents › valid › failed sign-ins are recorded; filters by action prefix, actor and time; pages walk the whole trail', async (t) => {
  const app = await build(t)
  const admin = await adminOf(app)
  const victim = await given(app).user({ email: 'victim@example.test' })
  for (let i = 0; i < 3; i++) {
    await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'victim@example.test', password: `wrong-guess-number-${i}` } })
  }
  const failed = await read(app, admin.token, '?action=session.sign_in_failed')
  t.equal(failed.json().items.length, 3, 'each failure')
  t.ok(failed.json().items.every((e: any) => e.targetId === victim.id && e.ip === '127.0.0.1'))
  t.equal((await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: 'victim@example.test', password: 'a-long-unusual-passphrase' } })).statusCode, 200)
  const sessions = await read(app, admin.token, '?action=session.*')
  t.ok(sessions.json().items.length >= 4, 'the prefix takes sign-ins and failures')
  t.ok(sessions.json().items.every((e: any) => e.action.startsWith('session.')))
  const bystander = await given(app).user()
  t.same((await read(app, admin.token, `?actor=${bystander.id}`)).json().items, [], 'a bystander did nothing')
  t.ok((await read(app, admin.token, `?actor=${victim.id}`)).json().items.every((e: any) => e.action === 'session.sign_in'), 'the victim only signed in')
  t.same((await read(app, admin.token, `?since=${encodeURIComponent(new Date(Date.now() + 60_000).toISOString())}`)).json().items, [], 'nothing in the future')

  const all = (await read(app, admin.token, '?limit=100')).json().items.map((e: any) => e.id)
  const walked: string[] = []
  let cursor: string | null = null
  do {
    const page: any = (await read(app, admin.token, `?limit=2${cursor ? `&cursor=${cursor}` : ''}`)).json()
    walked.push(...page.items.map((e: any) => e.id))
    cursor = page.nextCursor
  } while (cursor)
  t.same(walked, all, 'every event once, in order')
})

t.test('listAuditEvents › valid › the trail is append-only in the database: UPDATE and DELETE are refused', async (t) => {
  const app = await build(t)
  await given(app).signedIn({ role: 'admin' })
  await t.rejects(app.db.updateTable('audit_event').set({ action: 'nothing.happened' }).execute(), /append-only/)
  await t.rejects(app.db.deleteFrom('audit_event').execute(), /append-only/)
})

t.test('listAuditEvents › invalid input › a bad action, cursor, date or limit is 400 problem+json', async (t) => {
  const app = await fileApp()
  const admin = await adminOf(app)
  for (const query of ['?action=DROP%20TABLE', '?action=session.*.*', '?cursor=not-a-cursor', '?cursor=' + Buffer.from('1 or 1=1').toString('base64url'), '?since=yesterday', '?limit=0', '?limit=101', '?actor=nobody']) {
    const res = await read(app, admin.token, query)
    t.equal(res.statusCode, 400, query)
    t.match(res.headers['content-type'], /application\/problem\+json/, query)
  }
})

t.test('listAuditEvents › insufficient permissions › no token is 401; a user or a developer is 403', async (t) => {
  const app = await fileApp()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/audit' })).statusCode, 401)
  const user = await given(app).signedIn()
  t.equal((await read(app, user.accessToken)).statusCode, 403)
  const developer = await given(app).signedIn({ role: 'developer' })
  t.equal((await read(app, developer.accessToken)).statusCode, 403)
})

t.test('listAuditEvents › non-existing › filters that match nothing give an empty page, not a 404', async (t) => {
  const app = await fileApp()
  const admin = await adminOf(app)
  const res = await read(app, admin.token, '?action=nothing.ever&targetType=account&targetId=none')
  t.equal(res.statusCode, 200)
  t.same(res.json(), { items: [], nextCursor: null })
})
