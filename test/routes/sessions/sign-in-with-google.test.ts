import { createServer } from 'node:net'
import { setTimeout } from 'node:timers/promises'
import { sql } from '../../../db/kysely.js'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { allowedRedirectUris, googleClientId, startGoogle } from '../../helpers/google.js'

type App = Awaited<ReturnType<typeof build>>

const signInWithGoogle = (app: App, body: unknown, headers: Record<string, string> = {}, remoteAddress = '127.0.0.1') =>
  app.inject({ method: 'POST', url: '/v1/sessions/google', payload: body as object, headers, remoteAddress })

const accountsWithSubject = (app: App, subject: string) =>
  app.db.selectFrom('account').selectAll().where('google_subject', '=', subject).execute()

const count = async (app: App, table: 'account' | 'session') =>
  Number((await app.db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

const auditActions = async (app: App, since = '0') =>
  (await app.db.selectFrom('audit_event').select('action').where('id', '>', since).orderBy('at').execute()).map((r) => r.action)

// One provider and one app for the file's tests (a test that needs a provider or an app of its own starts it).
// The tests run one at a time: a test compares what the database and the provider saw with its mark.
const google = await startGoogle(t)
async function mark (app: App) {
  const last = await app.db.selectFrom('audit_event').select((eb) => eb.fn.max('id').as('id')).executeTakeFirst()
  return { auditId: last?.id ?? '0', accounts: await count(app, 'account'), sessions: await count(app, 'session'), tokenRequests: google.tokenRequests.length }
}

/** A port nothing listens on. */
async function closedPort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

t.test('signInWithGoogle › valid › the first sign-in creates a verified account, the next one reuses it', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  const who = google.identity({ name: 'Grace Hopper' })

  const first = await signInWithGoogle(app, { idToken: await google.idToken(who) }, { 'user-agent': 'FractalDesktop/3.1' })

  t.equal(first.statusCode, 200)
  t.match(first.json(), { tokenType: 'Bearer', accessToken: /^[\w-]+\.[\w-]+\.[\w-]+$/, refreshToken: /^[A-Za-z0-9_-]{43}$/, user: { email: who.email, name: 'Grace Hopper', emailVerified: true, role: 'user' } })
  const rows = await accountsWithSubject(app, who.sub)
  t.equal(rows.length, 1, 'an account with the Google subject')
  t.equal(rows[0]!.email, who.email)
  t.equal(rows[0]!.password_hash, null, 'no password')
  t.ok(rows[0]!.email_verified_at, 'the address counts as verified')
  t.equal(first.json().user.id, rows[0]!.id)
  const me = await app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(first.json().accessToken) })
  t.equal(me.statusCode, 200, 'the access token works')
  const session = await app.db.selectFrom('session').selectAll().where('account_id', '=', rows[0]!.id).executeTakeFirstOrThrow()
  t.match(session, { ip: '127.0.0.1', user_agent: 'FractalDesktop/3.1', revoked_at: null })
  const signUp = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'account.sign_up').where('target_id', '=', rows[0]!.id).executeTakeFirstOrThrow()
  t.match(signUp, { actor_id: rows[0]!.id, target_id: rows[0]!.id, details: { method: 'google' } })

  const second = await signInWithGoogle(app, { idToken: await google.idToken({ ...who, email: 'renamed@gmail.test' }) })

  t.equal(second.statusCode, 200)
  t.equal(second.json().user.id, rows[0]!.id, 'the same account, found by its subject')
  t.equal(await count(app, 'account') - before.accounts, 1, 'no second account')
  t.equal(await count(app, 'session') - before.sessions, 2, 'a second session')
  t.same(await auditActions(app, before.auditId), ['account.sign_up', 'session.sign_in'])
})

t.test('signInWithGoogle › valid › a new account from an unverified address is created unverified, named after the address', async (t) => {
  const app = await fileApp(google.env)
  const who = google.identity({ email_verified: false })
  delete (who as { name?: string }).name

  const res = await signInWithGoogle(app, { idToken: await google.idToken(who) })

  t.equal(res.statusCode, 200)
  t.match(res.json().user, { email: who.email, name: who.email.split('@')[0], emailVerified: false })
  const [row] = await accountsWithSubject(app, who.sub)
  t.equal(row?.email_verified_at, null)
})

t.test('signInWithGoogle › valid › an existing verified password account is linked when Google says the address is verified, and keeps its password', async (t) => {
  // An account whose address was never verified loses its password instead: test/regressions/issue-18-google-prehijack.test.ts.
  const app = await fileApp(google.env)
  const before = await mark(app)
  const user = await given(app).user({ email: 'linus@example.test' })
  const who = google.identity({ email: 'Linus@Example.test', email_verified: 'true' })

  const res = await signInWithGoogle(app, { idToken: await google.idToken(who) })

  t.equal(res.statusCode, 200)
  t.equal(res.json().user.id, user.id, 'the existing account')
  t.equal(res.json().user.emailVerified, true)
  const row = await app.db.selectFrom('account').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(row.google_subject, who.sub, 'the Google subject is stored')
  t.same(row.email_verified_at, user.email_verified_at, 'the address stays verified since then')
  t.equal(row.password_hash, user.password_hash, 'the password is kept')
  t.equal(await count(app, 'account') - before.accounts, 1)
  const linked = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'account.google_linked').where('target_id', '=', user.id).executeTakeFirstOrThrow()
  t.match(linked, { actor_id: user.id, target_id: user.id, details: { method: 'google' } })
  const password = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: user.email, password: user.password } })
  t.equal(password.statusCode, 200, 'the password still signs in')
})

t.test('signInWithGoogle › valid › the code flow redeems the code at the token endpoint with our client and redirect URI', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  const who = google.identity()
  google.nextIdToken(who)

  const res = await signInWithGoogle(app, { code: 'code-from-google', redirectUri: allowedRedirectUris[1] })

  t.equal(res.statusCode, 200)
  t.equal(res.json().user.email, who.email)
  t.equal(google.tokenRequests.length - before.tokenRequests, 1)
  t.match(google.tokenRequests[before.tokenRequests], { grant_type: 'authorization_code', code: 'code-from-google', redirect_uri: allowedRedirectUris[1], client_id: googleClientId, client_secret: 's' })
  t.notOk('code_verifier' in google.tokenRequests[before.tokenRequests]!, 'no PKCE verifier when none was given')
  t.equal((await accountsWithSubject(app, who.sub)).length, 1)
  t.equal(await count(app, 'session') - before.sessions, 1)
})

t.test('signInWithGoogle › valid › the code flow with PKCE passes the verifier on', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  const who = google.identity()
  const { code, codeVerifier } = await google.authorizeWithPkce(allowedRedirectUris[0])
  google.nextIdToken(who)

  const res = await signInWithGoogle(app, { code, redirectUri: allowedRedirectUris[0], codeVerifier })

  t.equal(res.statusCode, 200)
  t.equal(google.tokenRequests[before.tokenRequests]?.code_verifier, codeVerifier)
  t.equal((await accountsWithSubject(app, who.sub)).length, 1)
})

t.test('signInWithGoogle › conflict › an existing account is not linked when Google does not say the address is verified', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  const user = await given(app).user()

  for (const verified of [false, 'false', undefined]) {
    const who = google.identity({ email: user.email, email_verified: verified })
    if (verified === undefined) delete (who as { email_verified?: unknown }).email_verified
    const res = await signInWithGoogle(app, { idToken: await google.idToken(who) })
    t.equal(res.statusCode, 409, `email_verified ${verified}`)
    t.equal(res.json().code, 'conflict')
    t.match(res.headers['content-type'], /^application\/problem\+json/)
  }
  const row = await app.db.selectFrom('account').selectAll().where('id', '=', user.id).executeTakeFirstOrThrow()
  t.equal(row.google_subject, null, 'no link stored')
  t.equal(await count(app, 'account') - before.accounts, 1, 'no second account')
  t.equal(await count(app, 'session') - before.sessions, 0)
  t.same(await auditActions(app, before.auditId), [])
})

t.test('signInWithGoogle › insufficient permissions › a disabled account gets 401', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  const who = google.identity()
  await app.db.insertInto('account').values({ email: who.email, name: 'D', password_hash: null, google_subject: who.sub, email_verified_at: new Date(), disabled_at: new Date() }).execute()

  const res = await signInWithGoogle(app, { idToken: await google.idToken(who) })

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.equal(await count(app, 'session') - before.sessions, 0)
})

t.test('signInWithGoogle › insufficient permissions › an ID token Google did not issue for us is a 401 and creates nothing', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  // Many attempts: from an address of its own (sign-ins are limited per address).
  const from = '198.18.1.1'
  const who = google.identity()
  const now = Math.floor(Date.now() / 1000)
  const valid = await google.idToken(who)
  const [header, payload] = valid.split('.')
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString())

  const cases: Array<[string, string]> = [
    ['signed by another key', await google.forgedIdToken(who)],
    ['wrong audience', await google.idToken({ ...who, aud: 'someone-elses-client' })],
    ['wrong issuer', await google.idToken({ ...who, iss: 'https://accounts.evil.test' })],
    ['expired', await google.idToken({ ...who, iat: now - 7200, nbf: now - 7200, exp: now - 3600 })],
    ['tampered payload', `${header}.${enc({ ...claims, email: 'admin@example.test' })}.${valid.split('.')[2]}`],
    ['alg none', `${enc({ alg: 'none', typ: 'JWT' })}.${payload}.`],
    ['not a JWT', 'garbage'],
    ['no e-mail', await google.idToken({ sub: who.sub })]
  ]
  for (const [name, idToken] of cases) {
    const res = await signInWithGoogle(app, { idToken }, {}, from)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
  }
  t.equal(await count(app, 'account') - before.accounts, 0, 'no account')
  t.equal(await count(app, 'session') - before.sessions, 0, 'no session')

  const ok = await signInWithGoogle(app, { idToken: valid }, {}, from)
  t.equal(ok.statusCode, 200, 'the untouched token works')
})

t.test('signInWithGoogle › insufficient permissions › a redirect URI that is not ours is a 401 before Google is asked', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)

  for (const redirectUri of ['https://evil.test/callback', 'https://app.fractal.test/callback/../steal', 'https://app.fractal.test/callback?x=1']) {
    const res = await signInWithGoogle(app, { code: 'code-from-google', redirectUri })
    t.equal(res.statusCode, 401, redirectUri)
    t.equal(res.json().code, 'unauthorized', redirectUri)
  }
  t.equal(google.tokenRequests.length - before.tokenRequests, 0, 'the token endpoint was not called')
  t.equal(await count(app, 'account') - before.accounts, 0)
})

t.test('signInWithGoogle › insufficient permissions › a code the token endpoint refuses is a 401', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  google.server.service.once('beforeResponse', (response) => {
    response.statusCode = 400
    response.body = { error: 'invalid_grant' }
  })

  const res = await signInWithGoogle(app, { code: 'spent-code', redirectUri: allowedRedirectUris[0] })

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.match(res.json().detail, /invalid_grant/)
  t.equal(await count(app, 'account') - before.accounts, 0)
})

t.test('signInWithGoogle › unavailable › without GOOGLE_CLIENT_ID both flows are 503', async (t) => {
  const app = await build(t)

  const idToken = await signInWithGoogle(app, { idToken: 'a.b.c' })
  const code = await signInWithGoogle(app, { code: 'x', redirectUri: allowedRedirectUris[0] })

  for (const [name, res] of [['idToken', idToken], ['code', code]] as const) {
    t.equal(res.statusCode, 503, name)
    t.equal(res.json().code, 'unavailable', name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, name)
  }
  t.equal(await count(app, 'account'), 0)
})

t.test('signInWithGoogle › unavailable › an unreachable token endpoint is a 503 with Retry-After', async (t) => {
  const google = await startGoogle(t)
  const app = await build(t, { ...google.env, GOOGLE_TOKEN_URL: `http://127.0.0.1:${await closedPort()}/token` })

  const res = await signInWithGoogle(app, { code: 'code-from-google', redirectUri: allowedRedirectUris[0] })

  t.equal(res.statusCode, 503)
  t.equal(res.json().code, 'unavailable')
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After says when to try again')
  t.equal(await count(app, 'account'), 0)
})

t.test('signInWithGoogle › unavailable › an unreachable key set (JWKS) is a 503 with Retry-After, not a 401', async (t) => {
  const google = await startGoogle(t)
  const app = await build(t, { ...google.env, GOOGLE_JWKS_URL: `http://127.0.0.1:${await closedPort()}/jwks` })

  const res = await signInWithGoogle(app, { idToken: await google.idToken(google.identity()) })

  t.equal(res.statusCode, 503, 'Google being away is not the caller\'s fault')
  t.equal(res.json().code, 'unavailable')
  t.ok(Number(res.headers['retry-after']) > 0, 'Retry-After says when to try again')
  t.equal(await count(app, 'account'), 0)
})

t.test('signInWithGoogle › invalid input › each malformed body is a 400 and Google is not asked', async (t) => {
  const app = await fileApp(google.env)
  const before = await mark(app)
  // Many attempts: from an address of its own (sign-ins are limited per address).
  const from = '198.18.1.2'
  const idToken = await google.idToken(google.identity())
  const cases: Array<[string, unknown]> = [
    ['both code and idToken', { code: 'c', redirectUri: allowedRedirectUris[0], idToken }],
    ['neither', {}],
    ['unknown property', { idToken, email: 'admin@example.test' }],
    ['code without redirectUri', { code: 'c' }],
    ['redirectUri without code', { redirectUri: allowedRedirectUris[0] }],
    ['redirectUri not a URI', { code: 'c', redirectUri: 'not a uri' }],
    ['codeVerifier too short', { code: 'c', redirectUri: allowedRedirectUris[0], codeVerifier: 'short' }],
    ['empty idToken', { idToken: '' }],
    ['idToken not a string', { idToken: 42 }]
  ]
  for (const [name, body] of cases) {
    const res = await signInWithGoogle(app, body, {}, from)
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'validation_failed', name)
  }
  const text = await app.inject({ method: 'POST', url: '/v1/sessions/google', payload: idToken, headers: { 'content-type': 'text/plain' }, remoteAddress: from })
  t.equal(text.statusCode, 415)
  t.equal(text.json().code, 'unsupported_media_type')
  t.equal(google.tokenRequests.length - before.tokenRequests, 0)
  t.equal(await count(app, 'account') - before.accounts, 0)
})

t.test('signInWithGoogle › concurrency › first sign-ins of one new identity at once make one account, and all succeed', async (t) => {
  const app = await fileApp(google.env)
  const who = google.identity()
  const idToken = await google.idToken(who)
  const waitingInserts = async () => Number((await sql<{ n: string }>`
    select count(*) as n from pg_locks where relation = 'account'::regclass and not granted`.execute(app.db)).rows[0]!.n)

  // A SHARE lock lets the look-ups through but holds every insert into account, so all five requests are
  // past "no account with this subject" before the first insert lands: the race, every time.
  let pending: Promise<Array<Awaited<ReturnType<typeof signInWithGoogle>>>> | undefined
  await app.db.transaction().execute(async (trx) => {
    await sql`lock table account in share mode`.execute(trx)
    pending = Promise.all(Array.from({ length: 5 }, () => signInWithGoogle(app, { idToken })))
    const deadline = Date.now() + 10_000
    while (await waitingInserts() < 5 && Date.now() < deadline) await setTimeout(20)
  })
  const results = await pending!

  t.same(results.map((r) => r.statusCode), [200, 200, 200, 200, 200], 'a double submit is not a 500')
  t.equal((await accountsWithSubject(app, who.sub)).length, 1, 'one account')
  const ids = new Set(results.filter((r) => r.statusCode === 200).map((r) => r.json().user.id))
  t.ok(ids.size <= 1, 'every success is the same account')
})
