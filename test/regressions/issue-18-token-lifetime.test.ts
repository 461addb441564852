// Issue 18.1: access tokens were signed with `expiresIn: ttl * 1000`, which @fastify/jwt reads as seconds (10.4
// days for 900 s), while revocations were forgotten after `ttl`: a signed-out, disabled, demoted or deleted
// account's token worked again a minute after its revocation.
import { createSign } from 'node:crypto'
import t from 'tap'
import { buildApp } from '../../app.js'
import { ensureAdmin } from '../../services/accounts/accounts.service.js'
import { hashPassword } from '../../services/accounts/secrets.js'
import { hashToId, newSecret } from '../../services/hashing.js'
import { build, testConfig, testKeys } from '../helpers/build.js'
import { TestClock } from '../helpers/clock.js'
import { bearer, given } from '../helpers/given.js'
import { startGoogle } from '../helpers/google.js'

type App = Awaited<ReturnType<typeof build>>
const ttl = 60

const decode = (token: string) => JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { iat: number, exp: number }
const me = (app: App, token: string) => app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) })
const signIn = (app: App, email: string, password: string) =>
  app.inject({ method: 'POST', url: '/v1/sessions', payload: { email, password } })

t.test('tokens › security › every token the server issues lives exactly ACCESS_TOKEN_TTL', async (t) => {
  const google = await startGoogle(t)
  const app = await build(t, { ...google.env, ACCESS_TOKEN_TTL: String(ttl) })
  const issued: Record<string, string> = {}

  const user = await given(app).user()
  const signedIn = await signIn(app, user.email, user.password)
  t.equal(signedIn.statusCode, 200)
  issued.signIn = signedIn.json().accessToken

  const refreshed = await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken: signedIn.json().refreshToken } })
  t.equal(refreshed.statusCode, 200)
  issued.refreshSession = refreshed.json().accessToken

  const viaGoogle = await app.inject({ method: 'POST', url: '/v1/sessions/google', payload: { idToken: await google.idToken(google.identity()) } })
  t.equal(viaGoogle.statusCode, 200)
  issued.signInWithGoogle = viaGoogle.json().accessToken

  // An admin made by `npm run admin:create`, once it has set a password.
  const { account: admin } = await ensureAdmin(app.db, `admin-${Date.now()}@example.test`, 'Admin')
  await app.db.updateTable('account').set({ password_hash: await hashPassword('a-long-unusual-passphrase') }).where('id', '=', admin.id).execute()
  const adminSignIn = await signIn(app, admin.email, 'a-long-unusual-passphrase')
  t.equal(adminSignIn.statusCode, 200)
  issued['signIn (admin:create)'] = adminSignIn.json().accessToken

  for (const [how, token] of Object.entries(issued)) {
    const { iat, exp } = decode(token)
    t.equal(exp - iat, ttl, `${how}: exp − iat is the configured lifetime`)
  }

  // The class: every operation whose answer carries an access token is one of those exercised above.
  const issuing = [...app.openapi.operations.values()]
    .filter((op) => Object.values<any>((op.schema.response ?? {}) as object).some((r) => JSON.stringify(r).includes('"accessToken"')))
    .map((op) => op.operationId).sort()
  t.same(issuing, ['refreshSession', 'signIn', 'signInWithGoogle'], 'no operation issues tokens this test does not decode')
})

t.test('tokens › security › a token signed with our key but claiming a longer life than we issue is refused', async (t) => {
  const app = await build(t, { ACCESS_TOKEN_TTL: String(ttl) })
  const user = await given(app).signedIn()
  const real = user.accessToken.split('.')
  const header = JSON.parse(Buffer.from(real[0]!, 'base64url').toString())
  const claims = decode(user.accessToken)
  const forge = (changes: object) => {
    const input = `${real[0]}.${Buffer.from(JSON.stringify({ ...claims, ...changes })).toString('base64url')}`
    return `${input}.${createSign('SHA256').update(input).sign({ key: testKeys.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
  }
  t.equal(header.alg, 'ES256')
  t.equal((await me(app, forge({}))).statusCode, 200, 'the same claims re-signed are fine')
  t.equal((await me(app, forge({ exp: claims.iat + ttl * 1000 }))).statusCode, 401, 'ten times too long')
  t.equal((await me(app, forge({ exp: claims.iat + ttl + 1 }))).statusCode, 401, 'one second too long')
  t.equal((await me(app, forge({ iat: claims.iat + 3600, exp: claims.iat + 3600 + ttl }))).statusCode, 401, 'issued an hour in the future')
})

/** Each way a session ends, and what it takes: the token of `victim` must then stay refused. */
const revocations: Record<string, (app: App, victim: { headers: Record<string, string>, account: { id: string, email: string }, password: string, admin: Record<string, string>, other: Record<string, string> }) => Promise<number>> = {
  'sign-out': async (app, v) => (await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: v.headers })).statusCode,
  'session revoked from another session': async (app, v) => {
    const sid = (decode(v.headers.authorization!.slice(7)) as unknown as { sid: string }).sid
    return (await app.inject({ method: 'DELETE', url: `/v1/users/me/sessions/${sid}`, headers: v.other })).statusCode
  },
  'password changed in another session': async (app, v) =>
    (await app.inject({ method: 'PATCH', url: '/v1/users/me', headers: v.other, payload: { password: 'another-long-passphrase', currentPassword: v.password } })).statusCode,
  'password reset': async (app, v) => {
    const token = newSecret()
    await app.db.insertInto('email_token').values({ token_hash: hashToId(token), purpose: 'reset_password', account_id: v.account.id, email: v.account.email, expires_at: new Date(Date.now() + 3600_000) }).execute()
    return (await app.inject({ method: 'POST', url: '/v1/accounts/password-reset/confirm', payload: { token, password: 'another-long-passphrase' } })).statusCode
  },
  'account disabled': async (app, v) => (await app.inject({ method: 'PATCH', url: `/v1/admin/users/${v.account.id}`, headers: v.admin, payload: { disabled: true } })).statusCode,
  'role changed': async (app, v) => (await app.inject({ method: 'PATCH', url: `/v1/admin/users/${v.account.id}`, headers: v.admin, payload: { role: 'developer' } })).statusCode,
  'account deleted': async (app, v) => (await app.inject({ method: 'DELETE', url: '/v1/users/me', headers: v.headers })).statusCode
}

async function victimOf (app: App) {
  const g = given(app)
  const victim = await g.signedIn()
  const other = await signIn(app, victim.account.email, victim.account.password)
  const admin = await g.signedIn({ role: 'admin' })
  return { headers: victim.headers, account: victim.account, password: victim.account.password, admin: admin.headers, other: bearer(other.json().accessToken) }
}

for (const [path, revoke] of Object.entries(revocations)) {
  t.test(`tokens › security › ${path}: the token stays refused until and past its lifetime`, async (t) => {
    const clock = new TestClock()
    const app = await build(t, { ACCESS_TOKEN_TTL: String(ttl) }, { clock })
    const victim = await victimOf(app)
    const token = victim.headers.authorization!.slice(7)
    t.equal((await me(app, token)).statusCode, 200, 'works before')
    t.ok([200, 202, 204].includes(await revoke(app, victim)), 'the revocation is accepted')

    t.equal((await me(app, token)).statusCode, 401, 'refused at once')
    clock.advance((ttl - 5) * 1000)
    t.equal((await me(app, token)).statusCode, 401, 'refused near the end of its lifetime')
    clock.advance(10_000)
    const after = await me(app, token)
    t.equal(after.statusCode, 401, 'refused past its lifetime')
    t.equal(after.json().detail, 'The access token has expired.')
  })
}

t.test('tokens › security › a disabled, re-roled or deleted account\'s token fails in a process that missed the revocation', async (t) => {
  const clock = new TestClock()
  const configA = await testConfig(t, { ACCESS_TOKEN_TTL: String(ttl) })
  // Process B shares the database but not Redis: no revocation and no cache invalidation reaches it.
  const configB = await testConfig(t, { ACCESS_TOKEN_TTL: String(ttl), DATABASE_URL: configA.db.url! })
  const a = await buildApp(configA, { logger: false, clock })
  const b = await buildApp(configB, { logger: false, clock })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  await Promise.all([a.ready(), b.ready()])
  const g = given(a)
  const admin = await g.signedIn({ role: 'admin' })
  const changes = { disabled: { disabled: true }, 're-roled': { role: 'developer' }, deleted: null }

  for (const [what, change] of Object.entries(changes)) {
    const victim = await g.signedIn()
    t.equal((await me(b, victim.accessToken)).statusCode, 200, `${what}: B knows the account`)
    const hasura = () => b.inject({ method: 'GET', url: '/hasura/auth', headers: victim.headers })
    t.match((await hasura()).json(), { 'X-Hasura-Role': 'user' })
    const res = change
      ? await a.inject({ method: 'PATCH', url: `/v1/admin/users/${victim.account.id}`, headers: admin.headers, payload: change })
      : await a.inject({ method: 'DELETE', url: '/v1/users/me', headers: victim.headers })
    t.ok([200, 202, 204].includes(res.statusCode), `${what} through A`)
    clock.advance(6000) // past B's account cache (5 s), well within the token's lifetime
    t.equal((await me(b, victim.accessToken)).statusCode, 401, `${what}: B refuses the token without a revocation`)
    t.match((await hasura()).json(), { 'X-Hasura-Role': 'anonymous' }, `${what}: Hasura is told anonymous`)
    const container = await b.inject({ method: 'POST', url: '/v1/containers', headers: victim.headers, payload: { app: 'x' } })
    t.equal(container.statusCode, 401, `${what}: no container`)
  }
})
