// Issue 18.2: account pre-hijacking. An attacker signed up the victim's address with a password of theirs and
// never verified it; when the victim later signed in with Google, the account was linked and marked verified,
// and the attacker's password and sessions kept working in the victim's account.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { linkIdentity } from '../../services/accounts/accounts.service.js'
import { build } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'
import { startGoogle } from '../helpers/google.js'
import { mailTo, startMailbox, tokenIn } from '../helpers/mailbox.js'

type App = Awaited<ReturnType<typeof build>>
const password = 'attacker-chosen-passphrase'
const signIn = (app: App, email: string, pw = password) => app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password: pw } })
const me = (app: App, token: string) => app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) })
const google = (app: App, idToken: string) => app.inject({ method: 'POST', url: '/v1/sessions/google', payload: { idToken } })

t.test('signInWithGoogle › security › linking an account nobody verified drops what its creator held', async (t) => {
  const provider = await startGoogle(t)
  const mailbox = await startMailbox(t)
  const app = await build(t, { ...provider.env, SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const victim = provider.identity()
  const attackerInbox = `attacker-${randomUUID().slice(0, 8)}@evil.test`

  // The attacker signs up the victim's address and never verifies it, signs in, and starts an address change
  // to a mailbox of theirs (its link comes to them).
  t.equal((await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: victim.email, password, name: 'Not the victim' } })).statusCode, 201)
  const held = (await signIn(app, victim.email)).json()
  t.ok(held.accessToken, 'the attacker is signed in to the unverified account')
  t.equal((await app.inject({ method: 'PATCH', url: '/v1/users/me', headers: bearer(held.accessToken), payload: { email: attackerInbox, currentPassword: password } })).statusCode, 200)
  const changeLink = tokenIn(await mailTo(mailbox, attackerInbox, 'Confirm your new email address'), '/verify-email')

  // The victim arrives with Google, which vouches for the address.
  const linked = await google(app, await provider.idToken(victim))
  t.equal(linked.statusCode, 200)
  const account = await app.db.selectFrom('account').selectAll().where('google_subject', '=', victim.sub).executeTakeFirstOrThrow()
  t.equal(linked.json().user.id, account.id, 'the victim got the account')
  t.match(account, { email: victim.email, password_hash: null, pending_email: null })
  t.ok(account.email_verified_at)

  t.equal((await signIn(app, victim.email)).statusCode, 401, 'the attacker\'s password is gone')
  t.equal((await me(app, held.accessToken)).statusCode, 401, 'the attacker\'s access token is refused')
  t.equal((await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken: held.refreshToken } })).statusCode, 401, 'and the refresh token')
  const change = await app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: { token: changeLink } })
  t.match({ status: change.statusCode, code: change.json().code }, { status: 400, code: 'token_used' }, 'the address change the attacker started is void')
  t.equal((await app.db.selectFrom('account').select('email').where('id', '=', account.id).executeTakeFirstOrThrow()).email, victim.email)
  t.equal((await me(app, linked.json().accessToken)).statusCode, 200, 'the victim is in')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'account.unverified_credentials_dropped').execute()
  t.match(audit, [{ target_id: account.id, details: { provider: 'google', hadPassword: true, pendingEmail: true } }])
})

t.test('signInWithGoogle › valid › linking a verified account keeps its password and sessions (its owner added Google)', async (t) => {
  const provider = await startGoogle(t)
  const app = await build(t, provider.env)
  const owner = await given(app).signedIn()
  const linked = await google(app, await provider.idToken(provider.identity({ email: owner.account.email })))
  t.equal(linked.statusCode, 200)
  t.equal((await me(app, owner.accessToken)).statusCode, 200, 'the owner\'s other session lives on')
  t.equal((await signIn(app, owner.account.email, owner.account.password)).statusCode, 200, 'and the password')
})

t.test('signInWithGoogle › security › a password sign-in racing the link never leaves its creator a live session', async (t) => {
  const provider = await startGoogle(t)
  const app = await build(t, { ...provider.env, RATE_LIMIT_ENABLED: 'false' })
  for (let round = 0; round < 4; round++) {
    const victim = provider.identity()
    await given(app).user({ email: victim.email, password, verified: false })
    const [attacker, , victimAnswer] = await Promise.all([signIn(app, victim.email), signIn(app, victim.email), google(app, await provider.idToken(victim))])
    t.equal(victimAnswer.statusCode, 200)
    if (attacker.statusCode === 200) t.equal((await me(app, attacker.json().accessToken)).statusCode, 401, `round ${round}: the racing session was revoked`)
    const live = await app.db.selectFrom('session').innerJoin('account', 'account.id', 'session.account_id')
      .select('session.id').where('account.email', '=', victim.email).where('session.revoked_at', 'is', null).execute()
    t.equal(live.length, 1, `round ${round}: the victim's session only`)
  }
})

t.test('linkIdentity › security › the rule holds for any identity provider', async (t) => {
  const app = await build(t)
  const unverified = await given(app).signedIn({ verified: false })
  const { account, revoked } = await app.db.transaction().execute((trx) => linkIdentity(trx, unverified.account, {}, 'some-future-provider'))
  t.equal(account.password_hash, null)
  t.equal(revoked.length, 1)
  t.ok(account.email_verified_at)
  const verified = await given(app).signedIn()
  const kept = await app.db.transaction().execute((trx) => linkIdentity(trx, verified.account, {}, 'some-future-provider'))
  t.not(kept.account.password_hash, null)
  t.same(kept.revoked, [])
})
