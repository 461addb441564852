// The SDK's bearer auth and refresh-token rotation, and its problem errors, against a listening app.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { createFractalClient, FractalProblemError, unwrap, type TokenPair } from '../../sdk/src/index.js'
import { given } from '../helpers/given.js'
import { hashToId } from '../../services/hashing.js'
import { expiredAccessToken, listening } from './server.js'

const { app, baseUrl, count } = await listening(t)

const refreshTokenRow = (token: string) =>
  app.db.selectFrom('refresh_token').select(['used_at', 'session_id']).where('token_hash', '=', hashToId(token)).executeTakeFirstOrThrow()

t.test('sdk › refresh › ten calls failing together with an expired token make one refresh, then all succeed', async (t) => {
  const user = await given(app).signedIn()
  const reported: TokenPair[] = []
  const client = createFractalClient({
    baseUrl,
    accessToken: expiredAccessToken(app, user.accessToken),
    refreshToken: user.refreshToken,
    onTokens: (pair) => { reported.push(pair) }
  })
  const refreshesBefore = count('POST /v1/sessions/refresh')
  const meBefore = count('GET /v1/users/me')

  const answers = await Promise.all(Array.from({ length: 10 }, () => client.GET('/v1/users/me')))

  t.same(answers.map((a) => a.response.status), Array(10).fill(200), 'every call succeeds')
  t.ok(answers.every((a) => a.data?.id === user.account.id))
  t.equal(count('POST /v1/sessions/refresh') - refreshesBefore, 1, 'one refresh call reached the server')
  t.equal(count('GET /v1/users/me') - meBefore, 20, 'each call: a 401, then one replay')
  t.equal(reported.length, 1, 'onTokens reported the new pair once')
  t.same(client.tokens(), { accessToken: reported[0]!.accessToken, refreshToken: reported[0]!.refreshToken })
  t.not(reported[0]!.refreshToken, user.refreshToken, 'rotated')
  t.ok((await refreshTokenRow(user.refreshToken)).used_at, 'the old refresh token is spent')
  t.equal((await refreshTokenRow(reported[0]!.refreshToken)).used_at, null, 'the new one is live')
})

t.test('sdk › refresh › with only a refresh token, the first call refreshes and goes through', async (t) => {
  const user = await given(app).signedIn()
  const client = createFractalClient({ baseUrl, refreshToken: user.refreshToken })
  t.match(unwrap(await client.GET('/v1/users/me')), { id: user.account.id })
  t.ok(client.tokens().accessToken)
})

t.test('sdk › refresh › a refresh that fails lets the 401 surface, and a spent refresh token is not tried again', async (t) => {
  const user = await given(app).signedIn()
  const spent = user.refreshToken
  t.equal((await fetch(`${baseUrl}/v1/sessions/refresh`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ refreshToken: spent }) })).status, 200)
  const reported: TokenPair[] = []
  const client = createFractalClient({ baseUrl, accessToken: expiredAccessToken(app, user.accessToken), refreshToken: spent, onTokens: (pair) => { reported.push(pair) } })
  const before = count('POST /v1/sessions/refresh')

  const err = await client.GET('/v1/users/me').then(unwrap).catch((e: unknown) => e)

  t.ok(err instanceof FractalProblemError)
  t.match(err, { status: 401, code: 'unauthorized' })
  t.equal(count('POST /v1/sessions/refresh') - before, 1, 'one refresh was tried')
  t.same(reported, [], 'no pair to report')
  t.equal(client.tokens().refreshToken, undefined, 'the spent refresh token is dropped')
  await client.GET('/v1/users/me')
  t.equal(count('POST /v1/sessions/refresh') - before, 1, 'no second try')
})

t.test('sdk › bearer › public operations carry no Authorization; the caller\'s own header is left alone', async (t) => {
  const user = await given(app).signedIn()
  const seen: Array<[string, string | null]> = []
  const client = createFractalClient({
    baseUrl,
    accessToken: user.accessToken,
    fetch: (request) => { seen.push([new URL(request.url).pathname, request.headers.get('authorization')]); return fetch(request) }
  })
  await client.GET('/v1/regions')
  await client.GET('/v1/users/me')
  const before = count('POST /v1/sessions/refresh')
  const { response } = await client.GET('/v1/users/me', { headers: { authorization: 'Bearer not-mine' } })
  t.same(seen, [['/v1/regions', null], ['/v1/users/me', `Bearer ${user.accessToken}`], ['/v1/users/me', 'Bearer not-mine']])
  t.equal(response.status, 401, 'a token the caller chose is not refreshed')
  t.equal(count('POST /v1/sessions/refresh'), before)
})

t.test('sdk › errors › FractalProblemError carries the problem: status, code, title, detail, errors', async (t) => {
  const user = await given(app).signedIn()
  const client = createFractalClient({ baseUrl, accessToken: user.accessToken })

  const invalid = await client.GET('/v1/apps', { params: { query: { limit: 1000 } } }).then(unwrap).catch((e: unknown) => e)
  t.ok(invalid instanceof FractalProblemError)
  t.match(invalid, {
    name: 'FractalProblemError',
    status: 400,
    code: 'validation_failed',
    title: String,
    detail: /limit/,
    errors: [{ field: '/query/limit', message: String }],
    instance: '/v1/apps',
    requestId: String
  })

  const missing = await client.GET('/v1/containers/{containerId}', { params: { path: { containerId: randomUUID() } } }).then(unwrap).catch((e: unknown) => e)
  t.match(missing, { status: 404, code: 'not_found', title: 'Container not found', errors: [] })
  t.match((missing as Error).message, /^Container not found/)
})

t.test('sdk › personal access token › sent in place of a session, never refreshed; a revoked one surfaces as a 401', async (t) => {
  const user = await given(app).signedIn()
  const made = await fetch(`${baseUrl}/v1/users/me/tokens`, {
    method: 'POST', headers: { 'content-type': 'application/json', ...user.headers }, body: JSON.stringify({ name: 'sdk', scopes: ['account'] })
  })
  const { id, token } = await made.json() as { id: string, token: string }
  const client = createFractalClient({ baseUrl, personalAccessToken: token })
  t.match(unwrap(await client.GET('/v1/users/me')), { id: user.account.id })

  t.equal((await fetch(`${baseUrl}/v1/users/me/tokens/${id}`, { method: 'DELETE', headers: user.headers })).status, 204)
  const refreshesBefore = count('POST /v1/sessions/refresh')
  const err = await client.GET('/v1/users/me').then(unwrap).catch((e: unknown) => e)
  t.ok(err instanceof FractalProblemError)
  t.match(err, { status: 401, code: 'unauthorized' })
  t.equal(count('POST /v1/sessions/refresh') - refreshesBefore, 0, 'nothing to refresh')
  t.throws(() => createFractalClient({ baseUrl, personalAccessToken: token, refreshToken: user.refreshToken }), TypeError, 'not with a session')
})
