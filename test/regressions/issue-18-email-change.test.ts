// Issue 18.5: PATCH /v1/users/me changed the address with a bearer token alone, unlimited: 15 PATCHes queued
// 15 verification mails to one foreign address. An address change now needs the current password (or a sign-in
// within the last minutes), updateMe has a rate limit, and every mail we send counts against its recipient's cap.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { reauthenticationMinutes } from '../../services/accounts/accounts.service.js'
import { build } from '../helpers/build.js'
import { TestClock } from '../helpers/clock.js'
import { given } from '../helpers/given.js'
import { recipients, startMailbox } from '../helpers/mailbox.js'
import { mailDrained, until } from '../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const patch = (app: App, headers: Record<string, string>, payload: object) => app.inject({ method: 'PATCH', url: '/v1/users/me', headers, payload })
const foreign = () => `someone-${randomUUID().slice(0, 8)}@elsewhere.test`

t.test('updateMe › invalid input › an address change from a session older than the window needs the current password; nothing is written', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' }, { clock })
  const me = await given(app).signedIn()
  t.equal((await patch(app, me.headers, { email: foreign() })).statusCode, 200, 'a session signed in just now may')

  clock.advance(reauthenticationMinutes * 60_000 + 1000)
  const target = foreign()
  const res = await patch(app, me.headers, { email: target, name: 'Renamed' })
  t.equal(res.statusCode, 422)
  t.same(res.json().errors, [{ field: '/body/currentPassword', message: 'is required to change the e-mail address (or sign in again)' }])
  const row = await app.db.selectFrom('account').selectAll().where('id', '=', me.account.id).executeTakeFirstOrThrow()
  t.not(row.pending_email, target, 'no pending address')
  t.equal(row.name, 'Test User', 'nothing else of the request was applied either')
  t.same(await app.db.selectFrom('email_token').select('email').where('email', '=', target).execute(), [], 'no link made')

  const wrong = await patch(app, me.headers, { email: target, currentPassword: 'not-the-password' })
  t.equal(wrong.statusCode, 422)
  t.equal(wrong.json().errors[0].field, '/body/currentPassword')
  const right = await patch(app, me.headers, { email: target, currentPassword: me.account.password })
  t.equal(right.statusCode, 200)
  t.equal(right.json().pendingEmail, target)
})

t.test('updateMe › security › the operation is rate limited per user', async (t) => {
  const app = await build(t)
  const me = await given(app).signedIn()
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => patch(app, me.headers, { name: `Name ${i}` })))
  const statuses = answers.map((a) => a.statusCode)
  t.equal(statuses.filter((s) => s === 200).length, 10, 'ten a minute')
  t.equal(statuses.filter((s) => s === 429).length, 2)
})

t.test('mail › security › one address gets at most MAIL_MAX_PER_ADDRESS_PER_HOUR mails, whoever sends them; an hour later, more', async (t) => {
  const mailbox = await startMailbox(t)
  const clock = new TestClock()
  const app = await build(t, { SMTP_URL: mailbox.url, RATE_LIMIT_ENABLED: 'false', MAIL_MAX_PER_ADDRESS_PER_HOUR: '3' }, { clock })
  app.queue.startWorker(2)
  const target = foreign()
  // Five signed-in users each ask for the same foreign address, with their passwords.
  for (let i = 0; i < 5; i++) {
    const user = await given(app).signedIn()
    t.equal((await patch(app, user.headers, { email: target, currentPassword: user.account.password })).statusCode, 200)
  }
  const toTarget = () => mailbox.messages.filter((m) => recipients(m).includes(target)).length
  t.ok(await mailDrained(app), 'every mail job ran')
  await until(() => toTarget() >= 3, 60_000)
  t.equal(toTarget(), 3, 'three reached the address, two were dropped')

  clock.advance(3600_000 + 1000)
  const later = await given(app).signedIn()
  t.equal((await patch(app, later.headers, { email: target, currentPassword: later.account.password })).statusCode, 200)
  t.ok(await mailDrained(app))
  await until(() => toTarget() === 4, 60_000)
  t.equal(toTarget(), 4, 'the hour passed: one more')
})
