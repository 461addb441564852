import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { mailTo, startMailbox, tokenIn } from '../../helpers/mailbox.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
type Response = Awaited<ReturnType<App['inject']>>

const getMe = (app: App, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/v1/users/me', headers })
const updateMe = (app: App, body: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'PATCH', url: '/v1/users/me', payload: body as object, headers })
const deleteMe = (app: App, headers: Record<string, string> = {}) => app.inject({ method: 'DELETE', url: '/v1/users/me', headers })
const signIn = (app: App, email: string, password: string, userAgent = 'tap') =>
  app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password }, headers: { 'user-agent': userAgent } })
const refresh = (app: App, refreshToken: string) => app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken } })

const address = (label = 'ada') => `${label}-${randomBytes(3).toString('hex')}@example.test`
const newPassword = 'a-brand-new-passphrase'

const accountRow = (app: App, id: string) => app.db.selectFrom('account').selectAll().where('id', '=', id).executeTakeFirst()
const sessionsOf = (app: App, accountId: string) =>
  app.db.selectFrom('session').selectAll().where('account_id', '=', accountId).orderBy('created_at').execute()
/** The actions of the audit events an account made or was the target of (the file's tests share an app). */
const auditActions = async (app: App, accountId: string) =>
  (await app.db.selectFrom('audit_event').select('action')
    .where((eb) => eb.or([eb('actor_id', '=', accountId), eb('target_id', '=', accountId)]))
    .orderBy('id').execute()).map((e) => e.action)

function assertProblem (t: Test, res: Response, status: number, code: string, label = code) {
  t.equal(res.statusCode, status, label)
  t.match(res.headers['content-type'], /^application\/problem\+json/, label)
  t.equal(res.json().code, code, label)
}

/** Every key of a JSON value, nested ones included. */
const keysOf = (value: unknown): string[] =>
  value && typeof value === 'object' ? Object.entries(value).flatMap(([k, v]) => [k, ...keysOf(v)]) : []

const userKeys = ['createdAt', 'email', 'emailVerified', 'id', 'name', 'pendingEmail', 'role']

t.test('getMe › valid › answers the signed-in user and nothing secret', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn({ name: 'Ada Lovelace', role: 'developer' })

  const res = await getMe(app, me.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  t.same(Object.keys(res.json()).sort(), userKeys)
  t.same(res.json(), {
    id: me.account.id,
    email: me.account.email,
    name: 'Ada Lovelace',
    role: 'developer',
    emailVerified: true,
    pendingEmail: null,
    createdAt: me.account.created_at.toISOString()
  })
  t.same(keysOf(res.json()).filter((k) => /hash|password|secret|token/i.test(k)), [], 'no secret-looking key')
  t.notMatch(res.body, /\$argon2/, 'no hash anywhere in the body')
})

t.test('getMe › insufficient permissions › no token, a garbage one or a signed-out one get 401; a token without the account scope gets 403', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const signedOut = await signIn(app, me.account.email, me.account.password)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: bearer(signedOut.json().accessToken) })).statusCode, 204)

  assertProblem(t, await getMe(app), 401, 'unauthorized', 'no token')
  assertProblem(t, await getMe(app, bearer('garbage')), 401, 'unauthorized', 'garbage')
  assertProblem(t, await getMe(app, bearer(signedOut.json().accessToken)), 401, 'unauthorized', 'signed out')
  const scoped = await getMe(app, bearer(await given(app).token({ sub: me.account.id, scopes: ['fleet:read'] })))
  assertProblem(t, scoped, 403, 'forbidden', 'no account scope')
  t.equal(scoped.json().detail, 'This operation needs the scope account.')
})

t.test('getMe › security › the token of an account deleted through deleteMe gets 401', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  t.equal((await deleteMe(app, me.headers)).statusCode, 204)

  const res = await getMe(app, me.headers)

  assertProblem(t, res, 401, 'unauthorized')
})

// The row is gone while the session's revocation never reached Redis (a failed revoke, a flushed cache):
// the token still verifies, and the answer must be one the spec declares.
async function callWithoutAccountRow (t: Test, call: (app: App, headers: Record<string, string>) => Promise<Response>) {
  const app = await fileApp()
  const me = await given(app).signedIn()
  await app.db.deleteFrom('account').where('id', '=', me.account.id).execute()

  const res = await call(app, me.headers)

  t.not(res.statusCode, 500, res.body)
  t.ok([401, 404].includes(res.statusCode), `401 or 404, got ${res.statusCode}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.ok(['unauthorized', 'not_found'].includes(res.json().code), res.json().code)
  const recreated = await app.db.selectFrom('account').select('id')
    .where((eb) => eb.or([eb('id', '=', me.account.id), eb('email', '=', me.account.email)])).execute()
  t.equal(recreated.length, 0, 'nothing recreated')
}

t.test('getMe › security › a valid token whose account row is gone gets 401 or 404, never 500', (t) =>
  callWithoutAccountRow(t, (app, headers) => getMe(app, headers)))
t.test('updateMe › security › a valid token whose account row is gone gets 401 or 404, never 500', (t) =>
  callWithoutAccountRow(t, (app, headers) => updateMe(app, { name: 'Ghost' }, headers)))
t.test('deleteMe › security › a valid token whose account row is gone gets 401 or 404, never 500', (t) =>
  callWithoutAccountRow(t, (app, headers) => deleteMe(app, headers)))

t.test('updateMe › valid › changes the name at once, and nothing else', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn({ name: 'Ada Byron' })
  const mailsBefore = (await app.queue.counts('mail')).waiting

  const res = await updateMe(app, { name: 'Ada Lovelace' }, me.headers)

  t.equal(res.statusCode, 200)
  t.same(Object.keys(res.json()).sort(), userKeys)
  t.match(res.json(), { id: me.account.id, email: me.account.email, name: 'Ada Lovelace', pendingEmail: null, emailVerified: true })
  const row = await accountRow(app, me.account.id)
  t.match(row, { name: 'Ada Lovelace', email: me.account.email, password_hash: me.account.password_hash, pending_email: null, role: 'user' })
  t.ok(row!.updated_at > me.account.updated_at, 'updated_at moves')
  t.equal((await getMe(app, me.headers)).json().name, 'Ada Lovelace')
  t.equal((await app.queue.counts('mail')).waiting, mailsBefore, 'no mail for a name change')
})

t.test('updateMe › invalid input › a profane name is a 422 on /body/name and changes nothing', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn({ name: 'Ada Lovelace' })

  const res = await updateMe(app, { name: 'Fuck Face' }, me.headers)

  assertProblem(t, res, 422, 'unprocessable')
  t.same(res.json().errors, [{ field: '/body/name', message: 'contains words we do not allow' }])
  t.equal((await accountRow(app, me.account.id))!.name, 'Ada Lovelace')
})

t.test('updateMe › valid › a new address is pending until its link is followed; the new address gets the link, the old one a notice', async (t) => {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const me = await given(app).signedIn({ name: 'Ada Lovelace' })
  const old = me.account.email
  const next = address('new')

  const res = await updateMe(app, { email: next }, me.headers)

  t.equal(res.statusCode, 200)
  t.match(res.json(), { email: old, pendingEmail: next, emailVerified: true })
  t.match(await accountRow(app, me.account.id), { email: old, pending_email: next })
  const tokens = await app.db.selectFrom('email_token').selectAll().execute()
  t.match(tokens, [{ purpose: 'change_email', account_id: me.account.id, email: next, used_at: null }])

  const confirm = await mailTo(mailbox, next, 'Confirm your new email address')
  t.match(confirm.text, /^Hi Ada Lovelace,/)
  const notice = await mailTo(mailbox, old, 'A change of your Fractal email address was requested')
  t.ok(notice.text?.includes(next), 'the old address is told the new one')
  t.notOk(notice.text?.includes('token='), 'the old address does not get the link')
  t.equal((await signIn(app, next, me.account.password)).statusCode, 401, 'the new address does not sign in yet')
  t.equal((await getMe(app, me.headers)).json().email, old, 'the address is unchanged until verified')

  const verified = await app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: { token: tokenIn(confirm, '/verify-email') } })

  t.equal(verified.statusCode, 200)
  t.match(verified.json(), { email: next, pendingEmail: null, emailVerified: true })
  t.match((await getMe(app, me.headers)).json(), { email: next, pendingEmail: null })
  t.match(await accountRow(app, me.account.id), { email: next, pending_email: null })
  t.equal((await signIn(app, next, me.account.password)).statusCode, 200, 'the new address signs in')
  t.equal((await signIn(app, old, me.account.password)).statusCode, 401, 'the old one no longer does')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'account.email_changed').execute()
  t.match(audit, [{ actor_id: me.account.id, target_id: me.account.id, details: { from: old, to: next } }])
})

t.test('updateMe › enumeration › an address another account uses is answered like any other', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const other = await given(app).user()

  const taken = await updateMe(app, { email: other.email }, me.headers)
  const free = await updateMe(app, { email: address('free') }, me.headers)

  t.equal(taken.statusCode, 200)
  t.equal(free.statusCode, 200)
  t.equal(taken.json().pendingEmail, other.email)
  t.equal((await accountRow(app, other.id))!.email, other.email, 'the other account keeps its address')
  t.equal((await accountRow(app, me.account.id))!.email, me.account.email, 'mine is unchanged')
})

t.test('updateMe › valid › a new password needs the current one, then revokes every other session and keeps this one', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const other = await signIn(app, me.account.email, me.account.password, 'other-device')
  t.equal(other.statusCode, 200)
  const hash = me.account.password_hash

  const without = await updateMe(app, { password: newPassword }, me.headers)
  assertProblem(t, without, 422, 'unprocessable', 'without currentPassword')
  t.same(without.json().errors.map((e: { field: string }) => e.field), ['/body/currentPassword'])
  const wrong = await updateMe(app, { password: newPassword, currentPassword: 'not-my-password' }, me.headers)
  assertProblem(t, wrong, 422, 'unprocessable', 'wrong currentPassword')
  t.same(wrong.json().errors, [{ field: '/body/currentPassword', message: 'is wrong' }])
  const weak = await updateMe(app, { password: 'password123', currentPassword: me.account.password }, me.headers)
  assertProblem(t, weak, 422, 'unprocessable', 'a common new password')
  t.same(weak.json().errors.map((e: { field: string }) => e.field), ['/body/password'])
  t.equal((await accountRow(app, me.account.id))!.password_hash, hash, 'unchanged by the refused attempts')
  t.equal((await getMe(app, bearer(other.json().accessToken))).statusCode, 200, 'the other session still works after refusals')

  const res = await updateMe(app, { password: newPassword, currentPassword: me.account.password }, me.headers)

  t.equal(res.statusCode, 200)
  t.same(keysOf(res.json()).filter((k) => /password|hash/i.test(k)), [])
  t.not((await accountRow(app, me.account.id))!.password_hash, hash)
  assertProblem(t, await getMe(app, bearer(other.json().accessToken)), 401, 'unauthorized', 'the other access token')
  assertProblem(t, await refresh(app, other.json().refreshToken), 401, 'unauthorized', 'the other refresh token')
  t.equal((await getMe(app, me.headers)).statusCode, 200, 'this session keeps working')
  t.equal((await refresh(app, me.refreshToken)).statusCode, 200, 'and can refresh')
  t.same((await sessionsOf(app, me.account.id)).map((s) => s.revoked_reason), [null, 'password_change'])
  t.equal((await signIn(app, me.account.email, me.account.password)).statusCode, 401, 'the old password fails')
  t.equal((await signIn(app, me.account.email, newPassword)).statusCode, 200, 'the new one works')
  t.ok((await auditActions(app, me.account.id)).includes('account.password_changed'))
})

t.test('updateMe › invalid input › each malformed body is a 400 naming the field, and nothing changes', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn({ name: 'Ada Lovelace' })
  const cases: Array<[string, unknown, string]> = [
    ['an empty object', {}, '/body'],
    ['role (mass assignment)', { role: 'admin' }, '/body/role'],
    ['role beside a name (mass assignment)', { name: 'Eve', role: 'admin' }, '/body/role'],
    ['emailVerified (mass assignment)', { emailVerified: true }, '/body/emailVerified'],
    ['not an address', { email: 'nobody' }, '/body/email'],
    ['an empty name', { name: '' }, '/body/name'],
    ['a password below the schema minimum', { password: 'short', currentPassword: me.account.password }, '/body/password'],
    ['an empty currentPassword', { password: newPassword, currentPassword: '' }, '/body/currentPassword']
  ]
  for (const [name, body, field] of cases) {
    const res = await updateMe(app, body, me.headers)
    assertProblem(t, res, 400, 'validation_failed', name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}: ${JSON.stringify(res.json().errors)}`)
  }
  const missing = await app.inject({ method: 'PATCH', url: '/v1/users/me', headers: me.headers })
  assertProblem(t, missing, 400, 'validation_failed', 'no body')

  const row = await accountRow(app, me.account.id)
  t.match(row, { name: 'Ada Lovelace', role: 'user', email: me.account.email, pending_email: null, password_hash: me.account.password_hash })
  t.same(await auditActions(app, me.account.id), [])
})

t.test('updateMe › insufficient permissions › no token gets 401, a token without the account scope 403, and nothing changes', async (t) => {
  const app = await fileApp()
  const user = await given(app).user({ name: 'Ada Lovelace' })

  assertProblem(t, await updateMe(app, { name: 'Eve' }), 401, 'unauthorized')
  assertProblem(t, await updateMe(app, { name: 'Eve' }, bearer(await given(app).token({ sub: user.id, scopes: ['fleet:read'] }))), 403, 'forbidden')
  t.equal((await accountRow(app, user.id))!.name, 'Ada Lovelace')
})

t.test('deleteMe › valid › 204; signed out everywhere, the address freed at once, the row purged by the job', async (t) => {
  const app = await build(t)
  const me = await given(app).signedIn()
  const other = await signIn(app, me.account.email, me.account.password, 'other-device')

  const res = await deleteMe(app, me.headers)

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  for (const [label, access, refreshToken] of [['this session', me.accessToken, me.refreshToken], ['another session', other.json().accessToken, other.json().refreshToken]]) {
    assertProblem(t, await getMe(app, bearer(access)), 401, 'unauthorized', `${label}: access token`)
    assertProblem(t, await refresh(app, refreshToken), 401, 'unauthorized', `${label}: refresh token`)
  }
  t.same((await sessionsOf(app, me.account.id)).map((s) => s.revoked_reason), ['account_deleted', 'account_deleted'])
  const row = await accountRow(app, me.account.id)
  t.ok(row!.deleted_at instanceof Date, 'marked deleted')
  t.match(row, { email: `deleted+${me.account.id}@invalid`, password_hash: null, pending_email: null, google_subject: null })
  t.equal((await signIn(app, me.account.email, me.account.password)).statusCode, 401, 'the old credentials fail')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'account.deleted').execute()
  t.match(audit, [{ actor_id: me.account.id, target_type: 'account', target_id: me.account.id }])
  t.equal((await app.queue.counts('accounts')).waiting, 1, 'the purge job waits')

  const again = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: me.account.email, password: 'correct-horse-battery-staple', name: 'Ada Again' } })
  t.equal(again.statusCode, 201, 'the address signs up again')
  const live = await app.db.selectFrom('account').selectAll().where('email', '=', me.account.email).execute()
  t.match(live, [{ name: 'Ada Again', deleted_at: null }], 'a new account has the address')
  t.not(live[0]!.id, me.account.id)

  app.queue.startWorker(1)
  t.ok(await until(async () => (await accountRow(app, me.account.id)) === undefined), 'the job removes the row')
  t.same(await sessionsOf(app, me.account.id), [], 'and its sessions')
  t.equal((await app.db.selectFrom('audit_event').select('id').where('action', '=', 'account.deleted').execute()).length, 1, 'the audit trail stays')
  t.ok(await accountRow(app, live[0]!.id), 'the new account is untouched')
})

t.test('deleteMe › security › a second delete with the same token gets 401', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  t.equal((await deleteMe(app, me.headers)).statusCode, 204)

  assertProblem(t, await deleteMe(app, me.headers), 401, 'unauthorized')
  t.equal((await app.db.selectFrom('audit_event').select('id').where('action', '=', 'account.deleted').where('target_id', '=', me.account.id).execute()).length, 1)
})

t.test('deleteMe › insufficient permissions › no token gets 401, a token without the account scope 403, and nothing is deleted', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const purgesBefore = (await app.queue.counts('accounts')).waiting

  assertProblem(t, await deleteMe(app), 401, 'unauthorized')
  assertProblem(t, await deleteMe(app, bearer(await given(app).token({ sub: me.account.id, scopes: ['fleet:read'] }))), 403, 'forbidden')
  t.equal((await accountRow(app, me.account.id))!.deleted_at, null)
  t.equal((await getMe(app, me.headers)).statusCode, 200)
  t.equal((await app.queue.counts('accounts')).waiting, purgesBefore, 'no purge job')
})
