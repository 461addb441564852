// Issue 23 item 4: the sign-up reason and referral code are kept on the account and shown to operators.
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const signUp = (app: App, body: object) => app.inject({ method: 'POST', url: '/v1/accounts', payload: body })
const address = () => `ada-${randomBytes(3).toString('hex')}@example.test`

t.test('signUp › valid › a reason and a referral code are stored and shown in the admin user view', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const email = address()
  const res = await signUp(app, { email, password: 'correct-horse-battery-staple', name: 'Ada Lovelace', reason: '  Teaching a class ', referralCode: 'SPRING26' })
  t.equal(res.statusCode, 201)
  const plain = address()
  t.equal((await signUp(app, { email: plain, password: 'correct-horse-battery-staple', name: 'Grace Hopper' })).statusCode, 201)

  const listed = await app.inject({ method: 'GET', url: `/v1/admin/users?q=${encodeURIComponent(email)}`, headers: admin.headers })
  t.match(listed.json().items, [{ email, signUpReason: 'Teaching a class', referralCode: 'SPRING26' }])
  const without = await app.inject({ method: 'GET', url: `/v1/admin/users?q=${encodeURIComponent(plain)}`, headers: admin.headers })
  t.match(without.json().items, [{ email: plain, signUpReason: null, referralCode: null }])
  const me = await app.inject({ method: 'GET', url: '/v1/users/me', headers: admin.headers })
  t.notOk('signUpReason' in me.json(), 'not part of the user\'s own view')
})

t.test('signUp › invalid input › an over-long reason or a malformed referral code is 400; nothing is stored', async (t) => {
  const app = await build(t)
  for (const extra of [{ reason: 'x'.repeat(501) }, { reason: '   ' }, { referralCode: 'not a code!' }, { referralCode: '' }]) {
    const email = address()
    const res = await signUp(app, { email, password: 'correct-horse-battery-staple', name: 'Ada', ...extra })
    t.equal(res.statusCode, 400, JSON.stringify(extra).slice(0, 40))
    t.equal(res.json().code, 'validation_failed')
    t.equal((await app.db.selectFrom('account').select('id').where('email', '=', email).execute()).length, 0)
  }
})
