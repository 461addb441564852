import { randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof fileApp>>
type Response = Awaited<ReturnType<App['inject']>>

const listMySessions = (app: App, headers: Record<string, string> = {}) => app.inject({ method: 'GET', url: '/v1/users/me/sessions', headers })
const revokeMySession = (app: App, id: string, headers: Record<string, string> = {}) =>
  app.inject({ method: 'DELETE', url: `/v1/users/me/sessions/${id}`, headers })
const getMe = (app: App, headers: Record<string, string>) => app.inject({ method: 'GET', url: '/v1/users/me', headers })
const refresh = (app: App, refreshToken: string) => app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken } })

/** The session id an access token names. */
const sidOf = (accessToken: string) => JSON.parse(Buffer.from(accessToken.split('.')[1]!, 'base64url').toString()).sid as string

/** A second session of the same account through the sign-in route, with the access token's session id. */
async function signIn (app: App, account: { email: string, password: string }, userAgent: string) {
  const res = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: account.email, password: account.password }, headers: { 'user-agent': userAgent } })
  if (res.statusCode !== 200) throw new Error(`sign-in: ${res.statusCode} ${res.body}`)
  const { accessToken, refreshToken } = res.json() as { accessToken: string, refreshToken: string }
  return { accessToken, refreshToken, sid: sidOf(accessToken), headers: bearer(accessToken) }
}

const sessionRow = (app: App, id: string) => app.db.selectFrom('session').selectAll().where('id', '=', id).executeTakeFirstOrThrow()

function assertProblem (t: Test, res: Response, status: number, code: string, label = code) {
  t.equal(res.statusCode, status, label)
  t.match(res.headers['content-type'], /^application\/problem\+json/, label)
  t.equal(res.json().code, code, label)
}

t.test('listMySessions › valid › lists my active sessions newest first, marking the current one', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const laptop = await signIn(app, me.account, 'laptop-browser')
  const signedOut = await signIn(app, me.account, 'signed-out-phone')
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: signedOut.headers })).statusCode, 204)
  const expired = await signIn(app, me.account, 'expired-tablet')
  await app.db.updateTable('session').set({ expires_at: new Date(Date.now() - 1000) }).where('id', '=', expired.sid).execute()
  const stranger = await given(app).signedIn()

  const res = await listMySessions(app, me.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  const items = res.json().items as Array<Record<string, unknown>>
  t.same(items.map((s) => s.id), [laptop.sid, sidOf(me.accessToken)], 'only the two active sessions, newest first')
  t.same(Object.keys(items[0]!).sort(), ['createdAt', 'current', 'expiresAt', 'id', 'ip', 'lastUsedAt', 'userAgent'])
  t.match(items, [
    { id: laptop.sid, current: false, userAgent: 'laptop-browser', ip: '127.0.0.1' },
    { id: sidOf(me.accessToken), current: true, userAgent: 'tap', ip: '127.0.0.1' }
  ])
  t.ok(Date.parse(items[0]!.expiresAt as string) > Date.now(), 'expiresAt is ahead')
  t.notOk(items.some((s) => s.id === sidOf(stranger.accessToken)), 'no session of another account')
  t.notMatch(res.body, /refresh|token/i, 'no token in the list')

  const fromLaptop = await listMySessions(app, laptop.headers)
  t.same(fromLaptop.json().items.map((s: { current: boolean }) => s.current), [true, false], 'current follows the token')
})

t.test('listMySessions › insufficient permissions › no token gets 401, a token without the account scope 403', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()

  assertProblem(t, await listMySessions(app), 401, 'unauthorized')
  assertProblem(t, await listMySessions(app, bearer(await given(app).token({ sub: me.account.id, sid: sidOf(me.accessToken), scopes: ['fleet:read'] }))), 403, 'forbidden')
})

t.test('revokeMySession › valid › revokes another of my sessions: its tokens stop working, mine keep working', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const laptop = await signIn(app, me.account, 'laptop-browser')

  const res = await revokeMySession(app, laptop.sid, me.headers)

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  assertProblem(t, await getMe(app, laptop.headers), 401, 'unauthorized', 'its access token')
  assertProblem(t, await refresh(app, laptop.refreshToken), 401, 'unauthorized', 'its refresh token')
  const row = await sessionRow(app, laptop.sid)
  t.ok(row.revoked_at instanceof Date)
  t.equal(row.revoked_reason, 'revoked_by_user')
  t.equal((await getMe(app, me.headers)).statusCode, 200, 'my session keeps working')
  t.equal((await sessionRow(app, sidOf(me.accessToken))).revoked_at, null)
  t.same((await listMySessions(app, me.headers)).json().items.map((s: { id: string }) => s.id), [sidOf(me.accessToken)], 'gone from the list')
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'session.revoked').where('actor_id', '=', me.account.id).execute()
  t.match(audit, [{ actor_id: me.account.id, target_type: 'session', target_id: laptop.sid }])
})

t.test('revokeMySession › valid › revoking the current session signs this token out', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()

  t.equal((await revokeMySession(app, sidOf(me.accessToken), me.headers)).statusCode, 204)

  assertProblem(t, await getMe(app, me.headers), 401, 'unauthorized')
  assertProblem(t, await refresh(app, me.refreshToken), 401, 'unauthorized')
})

t.test('revokeMySession › non-existing › a session of another account, an unknown id and a revoked one get 404, and nothing is revoked', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const stranger = await given(app).signedIn()
  const strangerSid = sidOf(stranger.accessToken)
  const old = await signIn(app, me.account, 'old-phone')
  t.equal((await revokeMySession(app, old.sid, me.headers)).statusCode, 204)

  const cases: Array<[string, string]> = [['another account\'s session', strangerSid], ['an unknown id', randomUUID()], ['an already revoked session', old.sid]]
  const answers: Response[] = []
  for (const [label, id] of cases) {
    const res = await revokeMySession(app, id, me.headers)
    assertProblem(t, res, 404, 'not_found', label)
    t.equal(res.json().detail, `Session ${id} does not exist.`, label)
    answers.push(res)
  }
  t.same(answers.map((r) => r.json().title), ['Session not found', 'Session not found', 'Session not found'], 'no difference between mine, theirs and none')

  t.equal((await sessionRow(app, strangerSid)).revoked_at, null, 'the other account\'s session is untouched')
  t.equal((await getMe(app, stranger.headers)).statusCode, 200, 'and keeps working')
  t.equal((await sessionRow(app, old.sid)).revoked_reason, 'revoked_by_user', 'the revoked one keeps its first reason')
  t.equal((await app.db.selectFrom('audit_event').select('id').where('action', '=', 'session.revoked').where('actor_id', '=', me.account.id).execute()).length, 1, 'only the first revocation is audited')
})

t.test('revokeMySession › invalid input › a malformed id is a 400 on /params/sessionId', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()

  for (const id of ['not-a-uuid', '1', `${sidOf(me.accessToken)}x`]) {
    const res = await revokeMySession(app, id, me.headers)
    assertProblem(t, res, 400, 'validation_failed', id)
    t.same(res.json().errors.map((e: { field: string }) => e.field), ['/params/sessionId'], id)
  }
  t.equal((await sessionRow(app, sidOf(me.accessToken))).revoked_at, null)
})

t.test('revokeMySession › insufficient permissions › no token gets 401, a token without the account scope 403, and nothing is revoked', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const sid = sidOf(me.accessToken)

  assertProblem(t, await revokeMySession(app, sid), 401, 'unauthorized')
  assertProblem(t, await revokeMySession(app, sid, bearer(await given(app).token({ sub: me.account.id, scopes: ['fleet:read'] }))), 403, 'forbidden')
  t.equal((await sessionRow(app, sid)).revoked_at, null)
  t.equal((await getMe(app, me.headers)).statusCode, 200)
})
