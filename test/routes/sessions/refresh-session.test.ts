import { randomBytes } from 'node:crypto'
import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { hashToId } from '../../../services/hashing.js'

type App = Awaited<ReturnType<typeof fileApp>>

const refresh = (app: App, refreshToken: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken } as object, headers })

const getMe = (app: App, accessToken: string) => app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(accessToken) })

const tokenRow = (app: App, token: string) =>
  app.db.selectFrom('refresh_token').selectAll().where('token_hash', '=', hashToId(token)).executeTakeFirst()

const sessionOf = (app: App, accessToken: string) =>
  app.db.selectFrom('session').selectAll().where('id', '=', app.jwt.decode<{ sid: string }>(accessToken)!.sid).executeTakeFirstOrThrow()

const auditRows = (app: App, action: string) =>
  app.db.selectFrom('audit_event').selectAll().where('action', '=', action).execute()

/** How many rows a table holds. The file's tests share an app and run one at a time: a test compares before and after. */
const rowCount = async (app: App, table: 'refresh_token' | 'audit_event') =>
  Number((await app.db.selectFrom(table).select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

t.test('refreshSession › valid › rotates: a new pair for the same session, the old refresh token spent', async (t) => {
  const app = await fileApp()
  const { account, accessToken, refreshToken } = await given(app).signedIn()
  const before = await sessionOf(app, accessToken)

  const res = await refresh(app, refreshToken, { 'user-agent': 'FractalDesktop/3.1' })

  t.equal(res.statusCode, 200)
  const pair = res.json()
  t.match(pair, {
    tokenType: 'Bearer',
    accessToken: /^[\w-]+\.[\w-]+\.[\w-]+$/,
    expiresIn: app.config.jwt.accessTokenTtl,
    refreshToken: /^[A-Za-z0-9_-]{43}$/,
    user: { id: account.id, email: account.email, role: 'user' }
  })
  t.not(pair.refreshToken, refreshToken, 'a new refresh token')
  t.ok(pair.refreshExpiresIn > 0 && pair.refreshExpiresIn <= app.config.accounts.refreshTokenTtlDays * 86400, 'the refresh token lives until the session ends')
  t.equal(app.jwt.decode<{ sid: string }>(pair.accessToken)!.sid, before.id, 'the same session')

  t.ok((await tokenRow(app, refreshToken))?.used_at, 'the old refresh token is spent')
  const next = await tokenRow(app, pair.refreshToken)
  t.equal(next?.session_id, before.id)
  t.equal(next?.used_at, null)
  t.equal(next?.expires_at.getTime(), before.expires_at.getTime(), 'rotation does not extend the session')
  const after = await sessionOf(app, accessToken)
  t.ok(after.last_used_at.getTime() >= before.last_used_at.getTime(), 'the session was touched')
  t.equal(after.revoked_at, null)

  t.equal((await getMe(app, pair.accessToken)).statusCode, 200, 'the new access token works')
  t.equal((await getMe(app, accessToken)).statusCode, 200, 'the old access token of the live session still works until it expires')
  const again = await refresh(app, pair.refreshToken)
  t.equal(again.statusCode, 200, 'the new refresh token works')
  t.equal(await app.db.selectFrom('refresh_token').select('token_hash').where('session_id', '=', before.id).execute().then((r) => r.length), 3)
})

t.test('refreshSession › security › a spent refresh token presented again revokes the whole session', async (t) => {
  const app = await fileApp()
  const { account, refreshToken: first } = await given(app).signedIn()
  const bystander = await given(app).signedIn()
  const otherSession = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: account.email, password: account.password } })
  const second = (await refresh(app, first)).json()
  const third = (await refresh(app, second.refreshToken)).json()
  const session = await sessionOf(app, third.accessToken)

  const res = await refresh(app, first, { 'user-agent': 'thief/1.0' })

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.match(res.json().detail, /already used/)
  const revoked = await sessionOf(app, third.accessToken)
  t.ok(revoked.revoked_at, 'the session is revoked')
  t.equal(revoked.revoked_reason, 'refresh_token_reuse')

  const newest = await refresh(app, third.refreshToken)
  t.equal(newest.statusCode, 401, 'the newest refresh token of that session fails too')
  t.equal(newest.json().code, 'unauthorized')
  const me = await getMe(app, third.accessToken)
  t.equal(me.statusCode, 401, 'the access token of that session stops at once')
  t.equal(me.json().code, 'unauthorized')
  t.equal((await getMe(app, second.accessToken)).statusCode, 401, 'and so does every earlier access token of it')

  const events = (await auditRows(app, 'session.refresh_reuse')).filter((e) => e.target_id === session.id)
  t.ok(events.length >= 1)
  t.match(events[0], { actor_id: null, target_type: 'session', target_id: session.id, user_agent: 'thief/1.0', details: { accountId: account.id } })

  t.equal(otherSession.statusCode, 200)
  t.equal((await getMe(app, otherSession.json().accessToken)).statusCode, 200, 'another session of the same account lives on')
  t.equal((await refresh(app, otherSession.json().refreshToken)).statusCode, 200)
  t.equal((await getMe(app, bystander.accessToken)).statusCode, 200, 'other accounts are untouched')
})

t.test('refreshSession › concurrency › five refreshes with one token in parallel: exactly one new pair', async (t) => {
  const app = await fileApp()
  const { accessToken, refreshToken } = await given(app).signedIn()
  const session = await sessionOf(app, accessToken)

  const results = await Promise.all(Array.from({ length: 5 }, () => refresh(app, refreshToken)))

  const statuses = results.map((r) => r.statusCode).sort()
  t.same(statuses, [200, 401, 401, 401, 401], 'one 200, four 401')
  for (const res of results.filter((r) => r.statusCode === 401)) t.equal(res.json().code, 'unauthorized')
  const tokens = await app.db.selectFrom('refresh_token').selectAll().where('session_id', '=', session.id).execute()
  t.equal(tokens.length, 2, 'only one new refresh token was issued')
  // The losers presented a spent token: reuse detection revokes the session, the winner's pair included.
  t.equal((await sessionOf(app, accessToken)).revoked_reason, 'refresh_token_reuse')
  const winner = results.find((r) => r.statusCode === 200)!.json()
  t.equal((await refresh(app, winner.refreshToken)).statusCode, 401)
})

t.test('refreshSession › insufficient permissions › an unknown refresh token is a 401 and changes nothing', async (t) => {
  const app = await fileApp()
  const { accessToken } = await given(app).signedIn()
  const tokensBefore = await rowCount(app, 'refresh_token')
  const auditBefore = await rowCount(app, 'audit_event')

  const tokens: Array<[string, string]> = [['random', randomBytes(32).toString('base64url')], ['shortest', 'a'.repeat(16)], ['longest', 'x.y-z_'.repeat(33).slice(0, 200)]]
  for (const [name, token] of tokens) {
    const res = await refresh(app, token)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
  }
  t.equal((await sessionOf(app, accessToken)).revoked_at, null, 'no session revoked')
  t.equal(await rowCount(app, 'audit_event'), auditBefore, 'no audit event')
  t.equal(await rowCount(app, 'refresh_token'), tokensBefore, 'no token issued')
})

t.test('refreshSession › insufficient permissions › a refresh token of an expired session is a 401', async (t) => {
  const app = await fileApp()
  const { accessToken, refreshToken } = await given(app).signedIn()
  const session = await sessionOf(app, accessToken)
  await app.db.updateTable('session').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', session.id).execute()
  const tokensBefore = await rowCount(app, 'refresh_token')

  const res = await refresh(app, refreshToken)

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.equal((await tokenRow(app, refreshToken))?.used_at, null, 'the token is not spent')
  t.equal(await rowCount(app, 'refresh_token'), tokensBefore, 'no token issued')
})

t.test('refreshSession › insufficient permissions › an expired refresh token, a revoked session, a disabled account: 401', async (t) => {
  const app = await fileApp()
  const expired = await given(app).signedIn()
  await app.db.updateTable('refresh_token').set({ expires_at: new Date(Date.now() - 1000) }).where('token_hash', '=', hashToId(expired.refreshToken)).execute()
  const revoked = await given(app).signedIn()
  await app.db.updateTable('session').set({ revoked_at: new Date(), revoked_reason: 'test' }).where('account_id', '=', revoked.account.id).execute()
  const disabled = await given(app).signedIn()
  await app.db.updateTable('account').set({ disabled_at: new Date() }).where('id', '=', disabled.account.id).execute()
  const tokensBefore = await rowCount(app, 'refresh_token')

  for (const [name, token] of [['expired token', expired.refreshToken], ['revoked session', revoked.refreshToken], ['disabled account', disabled.refreshToken]] as const) {
    const res = await refresh(app, token)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
    t.equal((await tokenRow(app, token))?.used_at, null, `${name}: the token is not spent`)
  }
  t.equal(await rowCount(app, 'refresh_token'), tokensBefore, 'no token issued')
})

t.test('refreshSession › invalid input › a malformed refresh token or body is a 400 and spends nothing', async (t) => {
  const app = await fileApp()
  const { refreshToken } = await given(app).signedIn()
  const cases: Array<[string, unknown, string]> = [
    ['too short', { refreshToken: 'abc123' }, '/body/refreshToken'],
    ['too long', { refreshToken: 'a'.repeat(201) }, '/body/refreshToken'],
    ['bad characters', { refreshToken: `${refreshToken.slice(0, 20)}/+= ${refreshToken.slice(20)}` }, '/body/refreshToken'],
    ['not a string', { refreshToken: 1234567890123456 }, '/body/refreshToken'],
    ['missing', {}, '/body/refreshToken'],
    ['unknown property', { refreshToken, sessionId: 'x' }, '/body/sessionId']
  ]
  for (const [name, body, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: body as object })
    t.equal(res.statusCode, 400, name)
    t.equal(res.json().code, 'validation_failed', name)
    t.ok(res.json().errors?.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  const text = await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: refreshToken, headers: { 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415)
  t.equal(text.json().code, 'unsupported_media_type')

  t.equal((await tokenRow(app, refreshToken))?.used_at, null, 'the token is not spent')
  t.equal((await refresh(app, refreshToken)).statusCode, 200, 'and still works')
})
