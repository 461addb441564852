import t from 'tap'
import { fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof fileApp>>

const signOut = (app: App, headers: Record<string, string> = {}) =>
  app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers })

const getMe = (app: App, accessToken: string) => app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(accessToken) })
const refresh = (app: App, refreshToken: string) => app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken } })
const sidOf = (app: App, accessToken: string) => app.jwt.decode<{ sid: string }>(accessToken)!.sid

t.test('signOut › valid › 204, then the access and refresh tokens of the session stop working', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const otherDevice = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: me.account.email, password: me.account.password } })
  const sid = sidOf(app, me.accessToken)

  const res = await signOut(app, { ...me.headers, 'user-agent': 'FractalDesktop/3.1' })

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  const session = await app.db.selectFrom('session').selectAll().where('id', '=', sid).executeTakeFirstOrThrow()
  t.ok(session.revoked_at, 'the session is revoked')
  t.equal(session.revoked_reason, 'sign_out')
  const events = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'session.sign_out').where('target_id', '=', sid).execute()
  t.equal(events.length, 1)
  t.match(events[0], { actor_id: me.account.id, target_type: 'session', target_id: sid, user_agent: 'FractalDesktop/3.1' })

  const after = await getMe(app, me.accessToken)
  t.equal(after.statusCode, 401, 'the access token stops at once')
  t.equal(after.json().code, 'unauthorized')
  const refreshed = await refresh(app, me.refreshToken)
  t.equal(refreshed.statusCode, 401, 'the refresh token stops too')
  t.equal(refreshed.json().code, 'unauthorized')
  const again = await signOut(app, me.headers)
  t.equal(again.statusCode, 401, 'signing out twice is a 401')
  t.equal(again.json().code, 'unauthorized')

  t.equal((await getMe(app, otherDevice.json().accessToken)).statusCode, 200, 'the other session of the account lives on')
  t.equal((await refresh(app, otherDevice.json().refreshToken)).statusCode, 200)
})

t.test('signOut › insufficient permissions › no token, a malformed header or a garbage token: 401, nothing revoked', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  // The file's tests share an app and run one at a time: no audit event is no more events than before.
  const auditBefore = (await app.db.selectFrom('audit_event').select('action').execute()).length
  const cases: Array<[string, Record<string, string>]> = [
    ['no token', {}],
    ['not a bearer header', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['garbage', bearer('garbage')],
    ['the refresh token as a bearer', bearer(me.refreshToken)]
  ]
  for (const [name, headers] of cases) {
    const res = await signOut(app, headers)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, name)
  }
  const session = await app.db.selectFrom('session').select('revoked_at').where('id', '=', sidOf(app, me.accessToken)).executeTakeFirstOrThrow()
  t.equal(session.revoked_at, null)
  t.equal((await app.db.selectFrom('audit_event').select('action').execute()).length, auditBefore, 'no audit event')
})

t.test('signOut › insufficient permissions › a token without the account scope gets 403', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const token = await given(app).token({ sub: me.account.id, sid: sidOf(app, me.accessToken), scopes: [] })

  const res = await signOut(app, bearer(token))

  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'forbidden', detail: 'This operation needs the scope account.' })
  const session = await app.db.selectFrom('session').select('revoked_at').where('id', '=', sidOf(app, me.accessToken)).executeTakeFirstOrThrow()
  t.equal(session.revoked_at, null, 'the session is not revoked')
  t.equal((await getMe(app, me.accessToken)).statusCode, 200)
})
