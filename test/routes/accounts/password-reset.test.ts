import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { mailDrained, until } from '../../helpers/wait.js'
import { type Mailbox, mailTo, recipients, startMailbox, tokenIn } from '../../helpers/mailbox.js'

type App = Awaited<ReturnType<typeof build>>
type Response = Awaited<ReturnType<App['inject']>>

const requestReset = (app: App, body: unknown, remoteAddress = '127.0.0.1') =>
  app.inject({ method: 'POST', url: '/v1/accounts/password-reset', payload: body as object, remoteAddress })
const confirmReset = (app: App, body: unknown) =>
  app.inject({ method: 'POST', url: '/v1/accounts/password-reset/confirm', payload: body as object })
const signIn = (app: App, email: string, password: string) =>
  app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password } })

const address = (label = 'ada') => `${label}-${randomBytes(3).toString('hex')}@example.test`
const newPassword = 'a-brand-new-passphrase'

async function mailingApp (t: Test) {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  return { app, mailbox }
}

/** Asks for a reset through the API and reads the token of the mail. */
async function resetToken (app: App, mailbox: Mailbox, email: string) {
  const res = await requestReset(app, { email })
  if (res.statusCode !== 202) throw new Error(`password reset: ${res.statusCode} ${res.body}`)
  return tokenIn(await mailTo(mailbox, email, 'Reset your Fractal password'), '/password-reset/confirm')
}

const emailTokens = (app: App) => app.db.selectFrom('email_token').selectAll().orderBy('created_at').execute()
/** An account's e-mail tokens (the file's app is shared by its tests). */
const emailTokensOf = (app: App, accountId: string) => app.db.selectFrom('email_token').selectAll().where('account_id', '=', accountId).execute()
const passwordHashOf = async (app: App, id: string) =>
  (await app.db.selectFrom('account').select('password_hash').where('id', '=', id).executeTakeFirstOrThrow()).password_hash

function assertProblem (t: Test, res: Response, status: number, code: string, label = code) {
  t.equal(res.statusCode, status, label)
  t.match(res.headers['content-type'], /^application\/problem\+json/, label)
  t.equal(res.json().code, code, label)
}

t.test('requestPasswordReset › valid › 202 with the same body for a known and an unknown address; only the known one gets a mail', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user({ name: 'Ada Lovelace' })
  const stranger = address('stranger')

  const unknown = await requestReset(app, { email: stranger })
  const known = await requestReset(app, { email: user.email })

  t.equal(known.statusCode, 202)
  t.equal(unknown.statusCode, 202)
  t.same(known.json(), { email: user.email, message: `If ${user.email} has an account, we sent it a link to choose a new password.` })
  t.equal(unknown.body, known.body.replaceAll(user.email, stranger), 'the same answer for both')

  const mail = await mailTo(mailbox, user.email, 'Reset your Fractal password')
  t.match(mail.text, /^Hi Ada Lovelace,/)
  t.match(mail.text, /1 hour/)
  t.ok(await mailDrained(app))
  t.same(mailbox.messages.flatMap(recipients), [user.email], 'one mail, to the known address only')

  const tokens = await emailTokens(app)
  t.equal(tokens.length, 1, 'a token for the known address only')
  t.match(tokens[0], { purpose: 'reset_password', account_id: user.id, email: user.email, used_at: null })
  const ttlMinutes = (tokens[0]!.expires_at.getTime() - Date.now()) / 60_000
  t.ok(ttlMinutes > 59 && ttlMinutes <= 60, `valid one hour (${ttlMinutes.toFixed(1)} min)`)
  const audit = await app.db.selectFrom('audit_event').selectAll().execute()
  t.match(audit, [{ action: 'account.password_reset_requested', target_id: user.id }], 'audited for the known address only')
})

t.test('requestPasswordReset › enumeration › a disabled account gets the same 202 and no mail', async (t) => {
  const app = await fileApp()
  const user = await given(app).user({ disabled: true })
  const mailsBefore = (await app.queue.counts('mail')).waiting

  const res = await requestReset(app, { email: user.email.toUpperCase() })

  t.equal(res.statusCode, 202)
  t.same(res.json(), { email: user.email.toUpperCase(), message: `If ${user.email.toUpperCase()} has an account, we sent it a link to choose a new password.` })
  t.equal((await emailTokensOf(app, user.id)).length, 0)
  t.equal((await app.queue.counts('mail')).waiting, mailsBefore)
})

t.test('requestPasswordReset › invalid input › a malformed body is a 400 naming the field, and nothing is queued', async (t) => {
  const app = await fileApp()
  const user = await given(app).user()
  const mailsBefore = (await app.queue.counts('mail')).waiting
  const cases: Array<[string, unknown, string]> = [
    ['not an address', { email: 'nobody' }, '/body/email'],
    ['missing', {}, '/body/email'],
    ['an extra property', { email: user.email, password: 'x' }, '/body/password']
  ]
  for (const [name, body, field] of cases) {
    const res = await requestReset(app, body)
    assertProblem(t, res, 400, 'validation_failed', name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  t.equal((await emailTokensOf(app, user.id)).length, 0)
  t.equal((await app.queue.counts('mail')).waiting, mailsBefore)
})

t.test('requestPasswordReset › security › the sixth request from one address within the hour gets 429', async (t) => {
  const app = await fileApp()
  for (let i = 0; i < 5; i++) t.equal((await requestReset(app, { email: address() }, '10.2.0.1')).statusCode, 202)
  const res = await requestReset(app, { email: address() }, '10.2.0.1')
  assertProblem(t, res, 429, 'rate_limited')
})

t.test('confirmPasswordReset › valid › sets the password, spends the token, verifies the address and revokes every session', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const me = await given(app).signedIn({ verified: false })
  const second = await signIn(app, me.account.email, me.account.password)
  t.equal(second.statusCode, 200)
  const token = await resetToken(app, mailbox, me.account.email)

  const res = await confirmReset(app, { token, password: newPassword })

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.equal((await signIn(app, me.account.email, me.account.password)).statusCode, 401, 'the old password fails')
  const fresh = await signIn(app, me.account.email, newPassword)
  t.equal(fresh.statusCode, 200, 'the new password works')
  t.match(await passwordHashOf(app, me.account.id), /^\$argon2id\$/)

  for (const [label, access, refresh] of [['factory session', me.accessToken, me.refreshToken], ['signed-in session', second.json().accessToken, second.json().refreshToken]]) {
    const getMe = await app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(access) })
    assertProblem(t, getMe, 401, 'unauthorized', `${label}: access token`)
    const refreshed = await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken: refresh } })
    assertProblem(t, refreshed, 401, 'unauthorized', `${label}: refresh token`)
  }
  const sessions = await app.db.selectFrom('session').selectAll().where('account_id', '=', me.account.id).orderBy('created_at').execute()
  t.same(sessions.map((s) => s.revoked_reason), ['password_reset', 'password_reset', null], 'both old sessions revoked, the new sign-in open')

  t.ok((await emailTokens(app))[0]!.used_at instanceof Date, 'the token is spent')
  const account = await app.db.selectFrom('account').selectAll().where('id', '=', me.account.id).executeTakeFirstOrThrow()
  t.ok(account.email_verified_at instanceof Date, 'the link proved the mailbox: the address is verified')
  const audit = await app.db.selectFrom('audit_event').select(['action', 'actor_id']).where('action', '=', 'account.password_reset').execute()
  t.same(audit, [{ action: 'account.password_reset', actor_id: me.account.id }])
})

t.test('confirmPasswordReset › invalid input › a token used once gets 400 token_used and the password stays', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user()
  const token = await resetToken(app, mailbox, user.email)
  t.equal((await confirmReset(app, { token, password: newPassword })).statusCode, 204)
  const hash = await passwordHashOf(app, user.id)

  const again = await confirmReset(app, { token, password: 'an-attackers-own-passphrase' })

  assertProblem(t, again, 400, 'token_used')
  t.equal(await passwordHashOf(app, user.id), hash, 'unchanged')
  t.equal((await signIn(app, user.email, newPassword)).statusCode, 200)
})

t.test('confirmPasswordReset › invalid input › an expired token gets 400 token_expired and the password stays', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user()
  const token = await resetToken(app, mailbox, user.email)
  await app.db.updateTable('email_token').set({ expires_at: new Date(Date.now() - 1000) }).execute()
  const hash = await passwordHashOf(app, user.id)

  const res = await confirmReset(app, { token, password: newPassword })

  assertProblem(t, res, 400, 'token_expired')
  t.equal(await passwordHashOf(app, user.id), hash)
  t.equal((await emailTokens(app))[0]!.used_at, null)
})

t.test('confirmPasswordReset › invalid input › an unknown token and a verification token get 400 token_invalid', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const email = address()
  t.equal((await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password: 'correct-horse-battery-staple', name: 'Ada' } })).statusCode, 201)
  const verifyToken = tokenIn(await mailTo(mailbox, email, 'Verify your email address'), '/verify-email')
  const account = await app.db.selectFrom('account').selectAll().where('email', '=', email).executeTakeFirstOrThrow()

  assertProblem(t, await confirmReset(app, { token: randomBytes(32).toString('base64url'), password: newPassword }), 400, 'token_invalid', 'unknown')
  assertProblem(t, await confirmReset(app, { token: verifyToken, password: newPassword }), 400, 'token_invalid', 'a verification token')

  t.equal(await passwordHashOf(app, account.id), account.password_hash, 'the password stays')
  t.equal((await emailTokens(app))[0]!.used_at, null, 'the verification token is not spent')
  t.equal((await app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: { token: verifyToken } })).statusCode, 200)
})

t.test('confirmPasswordReset › invalid input › a password a rule refuses is a 422 and does not spend the token', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const me = await given(app).signedIn({ email: address('grace') })
  const token = await resetToken(app, mailbox, me.account.email)
  const hash = await passwordHashOf(app, me.account.id)

  const common = await confirmReset(app, { token, password: 'password123' })
  const withAddress = await confirmReset(app, { token, password: `${me.account.email.split('@')[0]}-forever` })

  for (const [label, res] of [['a common password', common], ['the address in the password', withAddress]] as const) {
    assertProblem(t, res, 422, 'unprocessable', label)
    t.same(res.json().errors.map((e: { field: string }) => e.field), ['/body/password'], label)
  }
  t.equal(await passwordHashOf(app, me.account.id), hash, 'the password stays')
  t.equal((await emailTokens(app))[0]!.used_at, null, 'the token is not spent')
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: me.headers })).statusCode, 200, 'no session revoked')
  t.equal((await app.db.selectFrom('audit_event').select('id').where('action', '=', 'account.password_reset').execute()).length, 0)

  t.equal((await confirmReset(app, { token, password: newPassword })).statusCode, 204, 'the same token then works')
  t.equal((await signIn(app, me.account.email, newPassword)).statusCode, 200)
})

t.test('confirmPasswordReset › invalid input › a malformed body is a 400 naming the field, and nothing changes', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user()
  const token = await resetToken(app, mailbox, user.email)
  const cases: Array<[string, unknown, string]> = [
    ['a password below the schema minimum', { token, password: 'short' }, '/body/password'],
    ['a password over 256 characters', { token, password: 'x'.repeat(257) }, '/body/password'],
    ['no password', { token }, '/body/password'],
    ['a malformed token', { token: 'not a token!', password: newPassword }, '/body/token'],
    ['no token', { password: newPassword }, '/body/token'],
    ['an extra property', { token, password: newPassword, email: 'eve@example.test' }, '/body/email']
  ]
  for (const [name, body, field] of cases) {
    const res = await confirmReset(app, body)
    assertProblem(t, res, 400, 'validation_failed', name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  t.equal((await emailTokens(app))[0]!.used_at, null, 'the token is not spent')
  t.equal((await signIn(app, user.email, user.password)).statusCode, 200, 'the password stays')
})

t.test('requestPasswordReset › enumeration › past three links an hour the address gets no more mail, and the answer stays the same', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user()

  const answers = []
  for (let i = 0; i < 4; i++) answers.push(await requestReset(app, { email: user.email }))

  t.same(answers.map((r) => r.statusCode), [202, 202, 202, 202])
  t.same(new Set(answers.map((r) => r.body)).size, 1, 'one body for every request')
  t.ok(await until(async () => { const c = await app.queue.counts('accounts'); return c.waiting + c.active + c.delayed === 0 && await mailDrained(app) }, 60_000), 'the four requests were handled')
  t.ok(await until(() => mailbox.messages.length >= 3, 60_000))
  t.equal(mailbox.messages.filter((m) => recipients(m).includes(user.email.toLowerCase())).length, 3, 'three mails, not four')
  t.equal((await emailTokens(app)).length, 3, 'no token behind the refused mail')
})
