// Issue 20: audit rows were written two ways (recordAudit reading the request's context, and accounts passing an
// explicit `ctx` to its own insert). Now one: recordAudit, with the context of the request being served, or the
// one a job carries for the request it acts for (the password reset).
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

const root = join(import.meta.dirname, '../..')
const sources = (dir: string): string[] => readdirSync(join(root, dir), { withFileTypes: true, recursive: true })
  .filter((e) => e.isFile() && e.name.endsWith('.ts'))
  .map((e) => join(e.parentPath, e.name).slice(root.length + 1))

t.test('audit › one writer › only services/audit/audit.service.ts inserts into audit_event', async (t) => {
  const writers = [...sources('services'), ...sources('routes'), ...sources('plugins')]
    .filter((file) => /insertInto\(\s*'audit_event'\s*\)/.test(readFileSync(join(root, file), 'utf8')))
  t.same(writers, ['services/audit/audit.service.ts'])
})

t.test('audit › one writer › no service or handler passes a request context by hand', async (t) => {
  const passing = [...sources('services'), ...sources('routes')]
    .filter((file) => /\bctx: RequestContext\)|contextOf\(/.test(readFileSync(join(root, file), 'utf8')))
  t.same(passing, [], 'the context comes from the request being served (auditContext)')
})

t.test('audit › request context › account rows carry the address and user agent of the request that caused them', async (t) => {
  const app = await build(t)
  const from = { remoteAddress: '198.51.100.23', headers: { 'user-agent': 'FractalDesktop/9.9' } }
  const user = await given(app).user()

  const signIn = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: user.email, password: user.password }, ...from })
  t.equal(signIn.statusCode, 200)
  const wrong = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: user.email, password: 'not-the-password' }, ...from })
  t.equal(wrong.statusCode, 401)
  const { refreshToken } = signIn.json()
  t.equal((await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken }, ...from })).statusCode, 200)
  t.equal((await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken }, ...from })).statusCode, 401, 'a reused refresh token')
  const other = await given(app).signedIn()
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: { ...other.headers, 'user-agent': 'FractalDesktop/9.9' }, remoteAddress: from.remoteAddress })).statusCode, 204)

  const rows = await app.db.selectFrom('audit_event').select(['action', 'ip', 'user_agent']).orderBy('id').execute()
  t.same(rows.map((r) => r.action), ['session.sign_in', 'session.sign_in_failed', 'session.refresh_reuse', 'session.sign_out'])
  for (const row of rows) t.match(row, { ip: '198.51.100.23', user_agent: 'FractalDesktop/9.9' }, row.action)
  const session = await app.db.selectFrom('session').select(['ip', 'user_agent']).where('account_id', '=', user.id).executeTakeFirstOrThrow()
  t.same(session, { ip: '198.51.100.23', user_agent: 'FractalDesktop/9.9' }, 'the session row too')
})

t.test('audit › request context › the password-reset job writes its row with the context of the request that asked', async (t) => {
  const app = await build(t)
  app.queue.startWorker(1)
  const user = await given(app).user()

  const res = await app.inject({ method: 'POST', url: '/v1/accounts/password-reset', payload: { email: user.email }, remoteAddress: '203.0.113.44', headers: { 'user-agent': 'reset-client/1.0' } })
  t.equal(res.statusCode, 202)

  const row = () => app.db.selectFrom('audit_event').select(['action', 'ip', 'user_agent']).where('action', '=', 'account.password_reset_requested').executeTakeFirst()
  t.ok(await until(async () => (await row()) !== undefined, 60_000), 'the job ran')
  t.same(await row(), { action: 'account.password_reset_requested', ip: '203.0.113.44', user_agent: 'reset-client/1.0' })
})
