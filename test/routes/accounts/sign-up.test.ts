import { createHash, randomBytes } from 'node:crypto'
import { sql } from '../../../db/kysely.js'
import type { ParsedMail } from 'mailparser'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { type Mailbox, mailTo, recipients, startMailbox } from '../../helpers/mailbox.js'
import { mailDrained, until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const signUp = (app: App, body: unknown, remoteAddress = '127.0.0.1') =>
  app.inject({ method: 'POST', url: '/v1/accounts', payload: body as object, remoteAddress })

const address = (label = 'ada') => `${label}-${randomBytes(3).toString('hex')}@example.test`
const sha256 = (token: string) => createHash('sha256').update(token).digest('base64url')

const mailsTo = (mailbox: Mailbox, to: string) => mailbox.messages.filter((m) => recipients(m).includes(to.toLowerCase()))
const tokenIn = (mail: ParsedMail, path: string) => new URL(linkOf(mail, path)).searchParams.get('token')!
function linkOf (mail: ParsedMail, path: string) {
  const link = mail.text?.match(/https?:\/\/[^\s<>"]+/g)?.find((l) => new URL(l).pathname === path)
  if (!link) throw new Error(`no ${path} link in "${mail.subject}"`)
  return link
}

/** The header names of a response, less those that differ on every request anyway. */
const headerNames = (res: Awaited<ReturnType<App['inject']>>) =>
  Object.keys(res.headers).filter((h) => !['date', 'x-request-id', 'content-length', 'x-ratelimit-remaining', 'x-ratelimit-reset'].includes(h)).sort()

const accounts = (app: App, email: string) =>
  app.db.selectFrom('account').selectAll().where((eb) => eb(eb.fn('lower', ['email']), '=', email.toLowerCase())).execute()
const rowCounts = async (app: App) => ({
  account: (await app.db.selectFrom('account').select('id').execute()).length,
  email_token: (await app.db.selectFrom('email_token').select('token_hash').execute()).length,
  audit_event: (await app.db.selectFrom('audit_event').select('id').execute()).length
})

// The file's tests share an app and run one at a time: a test compares what the database and the mail queue
// hold with what they held when it began, and signs up from an address of its own (sign-ups are limited per
// address).
async function mark (app: App) {
  const last = await app.db.selectFrom('audit_event').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst()
  return { rows: await rowCounts(app), auditId: last?.id ?? '0', mails: (await app.queue.counts('mail')).waiting }
}
type Mark = Awaited<ReturnType<typeof mark>>
/** Rows written since the mark. */
const rowsSince = async (app: App, since: Mark) => {
  const now = await rowCounts(app)
  return { account: now.account - since.rows.account, email_token: now.email_token - since.rows.email_token, audit_event: now.audit_event - since.rows.audit_event }
}
/** Mails queued since the mark (no worker runs in the file's app). */
const mailsSince = async (app: App, since: Mark) => (await app.queue.counts('mail')).waiting - since.mails
let callers = 0
const callerAddress = () => `198.18.0.${++callers}`

t.test('signUp › valid › answers 201 with the address and a message, and stores an unverified account with an argon2id hash', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const email = address()
  const password = 'correct-horse-battery-staple'

  const res = await signUp(app, { email, password, name: 'Ada Lovelace' }, from)

  t.equal(res.statusCode, 201)
  t.match(res.headers['content-type'], /^application\/json/)
  t.same(res.json(), { email, message: `We sent a verification link to ${email}.` })
  t.notOk(res.body.includes(password), 'the password is not echoed')
  t.notMatch(res.body, /argon2|token|hash/i, 'nothing secret in the answer')

  const [row, ...others] = await accounts(app, email)
  t.equal(others.length, 0, 'one account')
  t.match(row, { email, name: 'Ada Lovelace', role: 'user', email_verified_at: null, pending_email: null, deleted_at: null, disabled_at: null })
  t.match(row!.password_hash, /^\$argon2id\$/, 'argon2id')
  t.notOk(row!.password_hash!.includes(password), 'the hash is not the password')

  const tokens = await app.db.selectFrom('email_token').selectAll().where('account_id', '=', row!.id).execute()
  t.equal(tokens.length, 1)
  t.match(tokens[0], { purpose: 'verify_email', account_id: row!.id, email, used_at: null })
  const ttlHours = (tokens[0]!.expires_at.getTime() - Date.now()) / 3600_000
  t.ok(ttlHours > 23.9 && ttlHours <= 24, `the link lives 24 hours (${ttlHours.toFixed(2)})`)

  const events = await app.db.selectFrom('audit_event').selectAll().where('id', '>', before.auditId).execute()
  t.match(events, [{ action: 'account.sign_up', actor_id: row!.id, target_type: 'account', target_id: row!.id, ip: from }])
  t.equal(await mailsSince(app, before), 1, 'the verification mail waits for the worker')
})

t.test('signUp › valid › the mailed link verifies the account, then a welcome mail follows', async (t) => {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const email = address()

  const res = await signUp(app, { email, password: 'correct-horse-battery-staple', name: 'Ada Lovelace' })
  t.equal(res.statusCode, 201)

  const mail = await mailTo(mailbox, email, 'Verify your email address')
  t.match(mail.text, /^Hi Ada Lovelace,/)
  const link = linkOf(mail, '/verify-email')
  t.ok(link.startsWith(`${app.config.appUrl}/verify-email?token=`), link)
  const token = tokenIn(mail, '/verify-email')
  const stored = await app.db.selectFrom('email_token').select('token_hash').executeTakeFirstOrThrow()
  t.equal(stored.token_hash, sha256(token), 'only the hash of the mailed token is stored')
  t.not(stored.token_hash, token)

  const verified = await app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: { token } })
  t.equal(verified.statusCode, 200)
  t.match(verified.json(), { email, name: 'Ada Lovelace', role: 'user', emailVerified: true, pendingEmail: null })
  const [row] = await accounts(app, email)
  t.ok(row!.email_verified_at instanceof Date, 'email_verified_at is set')

  const welcome = await mailTo(mailbox, email, 'Welcome to Fractal')
  t.match(welcome.text, /^Hi Ada Lovelace,/)
  const signIn = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: 'correct-horse-battery-staple' } })
  t.equal(signIn.statusCode, 200, 'the new account signs in')
})

t.test('signUp › enumeration › a second sign-up with the address in any case gets the same answer, no second account, and the owner is told', async (t) => {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const email = address('grace')
  const shouted = email.toUpperCase()

  const first = await signUp(app, { email, password: 'correct-horse-battery-staple', name: 'Grace Hopper' })
  const again = await signUp(app, { email, password: 'an-attackers-own-passphrase', name: 'Mallory' })
  const upper = await signUp(app, { email: shouted, password: 'an-attackers-own-passphrase', name: 'Mallory' })

  for (const [label, res, asked] of [['same address', again, email], ['upper case', upper, shouted]] as const) {
    t.equal(res.statusCode, first.statusCode, `${label}: same status`)
    t.equal(res.body, first.body.replaceAll(email, asked), `${label}: the body a new address gets`)
    t.same(headerNames(res), headerNames(first), `${label}: same headers`)
  }

  const rows = await accounts(app, email)
  t.equal(rows.length, 1, 'no second account')
  t.match(rows[0], { email, name: 'Grace Hopper' }, 'the existing account is untouched')
  t.equal((await app.db.selectFrom('email_token').select('token_hash').execute()).length, 1, 'no second verification token')

  const notice = await mailTo(mailbox, email, 'You already have a Fractal account')
  t.match(notice.text, /^Hi Grace Hopper,/, 'addressed by the owner\'s name, not the one typed')
  t.ok(linkOf(notice, '/sign-in'), 'offers to sign in')
  t.ok(linkOf(notice, '/password-reset'), 'offers a password reset')
  t.ok(await mailDrained(app))
  t.same(mailsTo(mailbox, email).map((m) => m.subject).sort(),
    ['Verify your email address', 'You already have a Fractal account', 'You already have a Fractal account'], 'one verification, one notice per attempt')

  const attacker = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: 'an-attackers-own-passphrase' } })
  t.equal(attacker.statusCode, 401, 'the second password does not open the account')
  const audit = await app.db.selectFrom('audit_event').select(['action', 'target_id']).orderBy('id').execute()
  t.same(audit.map((e) => e.action), ['account.sign_up', 'account.sign_up_existing', 'account.sign_up_existing', 'session.sign_in_failed'])
})

t.test('signUp › enumeration › an address of a verified account gets the answer a new one gets', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const user = await given(app).user()

  const res = await signUp(app, { email: user.email, password: 'correct-horse-battery-staple', name: 'Someone Else' }, from)

  t.equal(res.statusCode, 201)
  t.same(res.json(), { email: user.email, message: `We sent a verification link to ${user.email}.` })
  t.equal((await accounts(app, user.email)).length, 1)
  t.equal((await app.db.selectFrom('email_token').select('token_hash').where('account_id', '=', user.id).execute()).length, 0, 'no token for the existing account')
  t.equal(await mailsSince(app, before), 1, 'the owner is mailed')
})

t.test('signUp › enumeration › two simultaneous sign-ups with one new address both get 201 and leave one account', async (t) => {
  const app = await fileApp()
  const from = callerAddress()
  const email = address('race')
  // Make the race certain: a SHARE lock lets both look the address up but holds both inserts until released.
  const { signUps, released } = await app.db.connection().execute(async (locker) => {
    await sql`begin`.execute(locker)
    await sql`lock table account in share mode`.execute(locker)
    const signUps = Promise.all([
      signUp(app, { email, password: 'correct-horse-battery-staple', name: 'First Racer' }, from),
      signUp(app, { email: email.toUpperCase(), password: 'correct-horse-battery-staple', name: 'Second Racer' }, from)
    ])
    const released = await until(async () => {
      const { rows } = await sql<{ n: number }>`select count(*)::int as n from pg_locks where relation = 'account'::regclass and not granted`.execute(app.db)
      return rows[0]!.n === 2
    })
    await sql`commit`.execute(locker)
    return { signUps, released }
  })
  t.ok(released, 'both inserts waited on the lock')

  const answers = await signUps

  t.same(answers.map((r) => r.statusCode), [201, 201], answers.map((r) => r.body).join('\n'))
  t.equal((await accounts(app, email)).length, 1)
})

t.test('signUp › invalid input › each malformed body is a 400 naming the field, and nothing is written', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const ok = { email: address(), password: 'correct-horse-battery-staple', name: 'Ada Lovelace' }
  const cases: Array<[string, unknown, string]> = [
    ['a password below the schema minimum', { ...ok, password: 'short-pw' }, '/body/password'],
    ['not an e-mail address', { ...ok, email: 'not-an-address' }, '/body/email'],
    ['no name', { email: ok.email, password: ok.password }, '/body/name'],
    ['a blank name', { ...ok, name: '   ' }, '/body/name'],
    ['a name over 80 characters', { ...ok, name: 'A'.repeat(81) }, '/body/name'],
    ['role: admin (mass assignment)', { ...ok, role: 'admin' }, '/body/role'],
    ['emailVerified (mass assignment)', { ...ok, emailVerified: true }, '/body/emailVerified']
  ]
  for (const [name, body, field] of cases) {
    const res = await signUp(app, body, from)
    t.equal(res.statusCode, 400, name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, name)
    t.equal(res.json().code, 'validation_failed', name)
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}: ${JSON.stringify(res.json().errors)}`)
  }
  const text = await app.inject({ method: 'POST', url: '/v1/accounts', payload: JSON.stringify(ok), headers: { 'content-type': 'text/plain' }, remoteAddress: from })
  t.equal(text.statusCode, 415, 'a text body is refused')
  t.equal(text.json().code, 'unsupported_media_type')

  t.same(await rowsSince(app, before), { account: 0, email_token: 0, audit_event: 0 }, 'nothing written')
  t.equal(await mailsSince(app, before), 0, 'no mail queued')
})

t.test('signUp › invalid input › a password or name a rule refuses is a 422 naming the field, and nothing is written', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const email = address('margaret')
  const ok = { email, password: 'correct-horse-battery-staple', name: 'Margaret Hamilton' }
  const cases: Array<[string, unknown, string, RegExp]> = [
    ['password123 (a common password)', { ...ok, password: 'password123' }, '/body/password', /most common/],
    ['a common password in capitals', { ...ok, password: 'QWERTYUIOP' }, '/body/password', /most common/],
    ['the address in the password', { ...ok, password: `my-${email.split('@')[0]}-password` }, '/body/password', /e-mail address/],
    ['a profane name', { ...ok, name: 'Shithead Smith' }, '/body/name', /words we do not allow/]
  ]
  for (const [name, body, field, detail] of cases) {
    const res = await signUp(app, body, from)
    t.equal(res.statusCode, 422, name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, name)
    t.equal(res.json().code, 'unprocessable', name)
    t.same(res.json().errors?.map((e: { field: string }) => e.field), [field], name)
    t.match(`${res.json().detail} ${JSON.stringify(res.json().errors)}`, detail, name)
  }
  t.same(await rowsSince(app, before), { account: 0, email_token: 0, audit_event: 0 }, 'nothing written')
  t.equal(await mailsSince(app, before), 0, 'no mail queued')
})

t.test('signUp › invalid input › a password shorter than PASSWORD_MIN_LENGTH (above the schema minimum) is a 422 on /body/password', async (t) => {
  const app = await build(t, { PASSWORD_MIN_LENGTH: '16' })

  const res = await signUp(app, { email: address(), password: 'fifteen-chars!!', name: 'Ada Lovelace' })

  t.equal(res.statusCode, 422)
  t.equal(res.json().code, 'unprocessable')
  t.same(res.json().errors, [{ field: '/body/password', message: 'must be at least 16 characters' }])
  t.same(await rowCounts(app), { account: 0, email_token: 0, audit_event: 0 }, 'nothing written')
})

t.test('signUp › enumeration › a refused password is refused the same way for an existing address, and its owner is not mailed', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const user = await given(app).user()

  const known = await signUp(app, { email: user.email, password: 'password123', name: 'Anyone' }, from)
  const unknown = await signUp(app, { email: address(), password: 'password123', name: 'Anyone' }, from)

  t.equal(known.statusCode, 422)
  t.same({ ...known.json(), instance: null, requestId: null }, { ...unknown.json(), instance: null, requestId: null })
  t.equal(await mailsSince(app, before), 0)
})

t.test('signUp › security › the eleventh sign-up from one address within the hour gets 429', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  for (let i = 0; i < 10; i++) {
    const res = await signUp(app, { email: address(`n${i}`), password: 'correct-horse-battery-staple', name: 'Ada' }, '10.9.8.7')
    t.equal(res.statusCode, 201, `sign-up ${i + 1}`)
  }
  const limited = await signUp(app, { email: address('n10'), password: 'correct-horse-battery-staple', name: 'Ada' }, '10.9.8.7')
  t.equal(limited.statusCode, 429)
  t.equal(limited.json().code, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After is set')
  t.equal((await rowsSince(app, before)).account, 10, 'the limited one wrote nothing')
  const elsewhere = await signUp(app, { email: address('n11'), password: 'correct-horse-battery-staple', name: 'Ada' }, '10.9.8.8')
  t.equal(elsewhere.statusCode, 201, 'another address is not limited')
})

t.test('signUp › enumeration › past three notices an hour the owner gets no more mail, and the answer stays the same', async (t) => {
  const app = await fileApp()
  const before = await mark(app)
  const from = callerAddress()
  const user = await given(app).user()

  const answers = []
  for (let i = 0; i < 4; i++) answers.push(await signUp(app, { email: user.email, password: 'correct-horse-battery-staple', name: `Attempt ${i}` }, from))

  t.same(answers.map((r) => r.statusCode), [201, 201, 201, 201])
  t.same(new Set(answers.map((r) => r.body)).size, 1, 'one body for every attempt')
  t.equal(await mailsSince(app, before), 3, 'three notices, not four')
  t.equal((await accounts(app, user.email)).length, 1)
})
