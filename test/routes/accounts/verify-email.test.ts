import { randomBytes } from 'node:crypto'
import t, { type Test } from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { type Mailbox, mailTo, startMailbox, tokenIn } from '../../helpers/mailbox.js'
import { mailDrained } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const verify = (app: App, body: unknown) => app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: body as object })

const address = (label = 'ada') => `${label}-${randomBytes(3).toString('hex')}@example.test`
const password = 'correct-horse-battery-staple'

/** An app that delivers its mail to a local SMTP server. */
async function mailingApp (t: Parameters<typeof build>[0]) {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  return { app, mailbox }
}

/** Signs up through the API and reads the token of the verification mail. */
async function signedUp (app: App, mailbox: Mailbox, name = 'Ada Lovelace') {
  const email = address()
  const res = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password, name } })
  if (res.statusCode !== 201) throw new Error(`sign-up: ${res.statusCode} ${res.body}`)
  const token = tokenIn(await mailTo(mailbox, email, 'Verify your email address'), '/verify-email')
  const account = await app.db.selectFrom('account').selectAll().where('email', '=', email).executeTakeFirstOrThrow()
  return { email, token, account }
}

const accountOf = (app: App, id: string) => app.db.selectFrom('account').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const emailTokens = (app: App) => app.db.selectFrom('email_token').selectAll().orderBy('created_at').execute()

function assertProblem (t: Test, res: Awaited<ReturnType<App['inject']>>, status: number, code: string, label = code) {
  t.equal(res.statusCode, status, label)
  t.match(res.headers['content-type'], /^application\/problem\+json/, label)
  t.equal(res.json().code, code, label)
}

t.test('verifyEmail › valid › the token of the sign-up mail verifies the address, spends the token, and sends a welcome mail', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const { email, token, account } = await signedUp(app, mailbox)

  const res = await verify(app, { token })

  t.equal(res.statusCode, 200)
  t.same(Object.keys(res.json()).sort(), ['createdAt', 'email', 'emailVerified', 'id', 'name', 'pendingEmail', 'role'])
  t.match(res.json(), { id: account.id, email, name: 'Ada Lovelace', role: 'user', emailVerified: true, pendingEmail: null })
  const row = await accountOf(app, account.id)
  t.ok(row.email_verified_at instanceof Date, 'email_verified_at is set')
  const [stored] = await emailTokens(app)
  t.ok(stored!.used_at instanceof Date, 'the token is spent')
  const welcome = await mailTo(mailbox, email, 'Welcome to Fractal')
  t.match(welcome.text, /^Hi Ada Lovelace,/)
})

t.test('verifyEmail › invalid input › a token used once gets 400 token_used, and no second welcome mail', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const { email, token, account } = await signedUp(app, mailbox)
  t.equal((await verify(app, { token })).statusCode, 200)
  const verifiedAt = (await accountOf(app, account.id)).email_verified_at

  const again = await verify(app, { token })

  assertProblem(t, again, 400, 'token_used')
  t.same((await accountOf(app, account.id)).email_verified_at, verifiedAt, 'unchanged')
  t.ok(await mailDrained(app))
  await mailTo(mailbox, email, 'Welcome to Fractal')
  t.equal(mailbox.messages.filter((m) => m.subject === 'Welcome to Fractal').length, 1, 'one welcome mail')
})

t.test('verifyEmail › invalid input › an expired token gets 400 token_expired and the address stays unverified', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const { token, account } = await signedUp(app, mailbox)
  await app.db.updateTable('email_token').set({ expires_at: new Date(Date.now() - 60_000) }).execute()

  const res = await verify(app, { token })

  assertProblem(t, res, 400, 'token_expired')
  t.equal((await accountOf(app, account.id)).email_verified_at, null)
  t.equal((await emailTokens(app))[0]!.used_at, null, 'the expired token is not marked used')
})

t.test('verifyEmail › invalid input › a token we never issued gets 400 token_invalid', async (t) => {
  const app = await fileApp()
  const user = await given(app).user({ verified: false })

  const res = await verify(app, { token: randomBytes(32).toString('base64url') })

  assertProblem(t, res, 400, 'token_invalid')
  t.equal((await accountOf(app, user.id)).email_verified_at, null)
})

t.test('verifyEmail › invalid input › a password-reset token gets 400 token_invalid and still resets the password afterwards', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const user = await given(app).user({ verified: false })
  t.equal((await app.inject({ method: 'POST', url: '/v1/accounts/password-reset', payload: { email: user.email } })).statusCode, 202)
  const token = tokenIn(await mailTo(mailbox, user.email, 'Reset your Fractal password'), '/password-reset/confirm')

  const res = await verify(app, { token })

  assertProblem(t, res, 400, 'token_invalid')
  t.equal((await accountOf(app, user.id)).email_verified_at, null, 'not verified by a reset token')
  t.equal((await emailTokens(app))[0]!.used_at, null, 'the reset token is not spent')
  const reset = await app.inject({ method: 'POST', url: '/v1/accounts/password-reset/confirm', payload: { token, password: 'a-brand-new-passphrase' } })
  t.equal(reset.statusCode, 204, 'the reset token still works where it belongs')
})

t.test('verifyEmail › invalid input › a malformed token or body is a 400 validation_failed naming the field', async (t) => {
  const app = await fileApp()
  const cases: Array<[string, unknown, string]> = [
    ['too short', { token: 'abc' }, '/body/token'],
    ['characters outside the token alphabet', { token: 'a'.repeat(20) + ' or 1=1; --' }, '/body/token'],
    ['too long', { token: 'a'.repeat(201) }, '/body/token'],
    ['not a string', { token: 1234567890123456 }, '/body/token'],
    ['missing', {}, '/body/token'],
    ['an extra property', { token: randomBytes(32).toString('base64url'), email: 'eve@example.test' }, '/body/email']
  ]
  for (const [name, body, field] of cases) {
    const res = await verify(app, body)
    assertProblem(t, res, 400, 'validation_failed', name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}: ${JSON.stringify(res.json().errors)}`)
  }
})

t.test('verifyEmail › invalid input › the link of an account deleted since gets 400 token_invalid', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const { token, account } = await signedUp(app, mailbox)
  const signIn = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: account.email, password } })
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/users/me', headers: bearer(signIn.json().accessToken) })).statusCode, 204)

  const res = await verify(app, { token })

  assertProblem(t, res, 400, 'token_invalid')
  // The worker may have purged the row already; if not, it was not verified.
  const row = await app.db.selectFrom('account').selectAll().where('id', '=', account.id).executeTakeFirst()
  t.ok(row === undefined || row.email_verified_at === null, 'not verified')
  t.ok(await mailDrained(app))
  t.notOk(mailbox.messages.some((m) => m.subject === 'Welcome to Fractal'), 'no welcome mail')
})

t.test('verifyEmail › invalid input › an address another account took since the change was asked gets 409 conflict, and nothing changes', async (t) => {
  const { app, mailbox } = await mailingApp(t)
  const me = await given(app).signedIn()
  const wanted = address('wanted')
  const change = await app.inject({ method: 'PATCH', url: '/v1/users/me', headers: me.headers, payload: { email: wanted } })
  t.equal(change.statusCode, 200)
  const token = tokenIn(await mailTo(mailbox, wanted, 'Confirm your new email address'), '/verify-email')
  const other = await given(app).user({ email: wanted.toUpperCase() })

  const res = await verify(app, { token })

  assertProblem(t, res, 409, 'conflict')
  const row = await accountOf(app, me.account.id)
  t.equal(row.email, me.account.email, 'my address is unchanged')
  t.equal(row.pending_email, wanted, 'the change is still pending')
  t.equal((await accountOf(app, other.id)).email, wanted.toUpperCase(), 'the other account keeps its address')
})
