// Issue 18.3: the sign-in lockout was read before the slow password check and written after it: 24 concurrent
// guesses for one address were all checked (limit 10), and the 24th, the right one, got 200. Attempts are now
// counted atomically before the check, and a wrong currentPassword on PATCH /v1/users/me counts too.
import t from 'tap'
import { build } from '../helpers/build.js'
import { TestClock } from '../helpers/clock.js'
import { given } from '../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const max = 10
const signIn = (app: App, email: string, password: string) => app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password } })
const failedChecks = async (app: App) =>
  (await app.db.selectFrom('audit_event').select('id').where('action', '=', 'session.sign_in_failed').execute()).length

for (const store of ['Redis', 'memory (embedded)']) {
  t.test(`signIn › security › 24 concurrent guesses (${store}): at most SIGN_IN_MAX_FAILURES are checked, the right one after them is refused`, async (t) => {
    const app = await build(t, { RATE_LIMIT_ENABLED: 'false', SIGN_IN_MAX_FAILURES: String(max), ...(store === 'Redis' ? {} : { REDIS_URL: '' }) })
    const user = await given(app).user()
    const guesses = Array.from({ length: 23 }, (_, i) => signIn(app, user.email, `wrong-guess-number-${i}`))
    const answers = await Promise.all(guesses)
    const right = await signIn(app, user.email, user.password)

    const statuses = answers.map((a) => a.statusCode)
    t.equal(statuses.filter((s) => s === 401).length, max, 'exactly the limit was checked')
    t.equal(statuses.filter((s) => s === 429).length, 23 - max, 'the rest refused unchecked')
    t.equal(await failedChecks(app), max, 'the audit trail shows the checks made')
    t.equal(right.statusCode, 429, 'the right password after the limit is refused too')
    t.ok(Number(right.headers['retry-after']) > 0)
    t.same(await app.db.selectFrom('session').select('id').where('account_id', '=', user.id).execute(), [], 'no session')
  })
}

t.test('signIn › security › the window slides on the app clock: closed just before 15 minutes, open after', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false', SIGN_IN_MAX_FAILURES: '3' }, { clock })
  const user = await given(app).user()
  for (let i = 0; i < 3; i++) t.equal((await signIn(app, user.email, 'wrong-guess-here')).statusCode, 401)
  clock.advance(15 * 60_000 - 2000)
  const early = await signIn(app, user.email, user.password)
  t.equal(early.statusCode, 429, 'still closed')
  t.ok(Number(early.headers['retry-after']) <= 2, `Retry-After says about when (${early.headers['retry-after']} s)`)
  clock.advance(3000)
  t.equal((await signIn(app, user.email, user.password)).statusCode, 200, 'open once the attempts left the window')
  t.equal((await signIn(app, user.email, 'wrong-guess-here')).statusCode, 401, 'a right password cleared the count')
})

t.test('updateMe › security › a wrong currentPassword counts toward the address\'s sign-in limit, and meets it', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false', SIGN_IN_MAX_FAILURES: '4' })
  const me = await given(app).signedIn()
  const patch = (currentPassword: string) => app.inject({ method: 'PATCH', url: '/v1/users/me', headers: me.headers, payload: { password: 'a-brand-new-passphrase', currentPassword } })
  const answers = await Promise.all(Array.from({ length: 8 }, (_, i) => patch(`wrong-current-${i}`)))
  t.same(answers.map((a) => a.statusCode).sort(), [422, 422, 422, 422, 429, 429, 429, 429], 'four checked, four refused unchecked')
  t.equal((await patch(me.account.password)).statusCode, 429, 'the right one too, once the limit is met')
  t.equal((await signIn(app, me.account.email, me.account.password)).statusCode, 429, 'and sign-in shares the limit')
})
