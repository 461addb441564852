// Issue 19: Dropbox revocation posted a form body (Dropbox answers that with a 400) and any 4xx counted as
// revoked, so a connection could be forgotten with its grant alive at Dropbox. Now each provider is called
// as it documents (test/helpers/revocation-stand-in.ts plays both), and a connection is forgotten only when
// the provider says revoked, or revoked already.
import { readFile } from 'node:fs/promises'
import t from 'tap'
import { providersFile } from '../../../services/storage/storage.service.js'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { startRevocationStandIn, type RevocationStandIn } from '../../helpers/revocation-stand-in.js'
import { connect, connectionRow, startProvider, storageEnv, type FakeProvider, type ProviderEntry } from '../../helpers/storage-oauth.js'

type App = Awaited<ReturnType<typeof build>>
const disconnect = (app: App, headers: Record<string, string>, provider: string) => app.inject({ method: 'DELETE', url: `/v1/storage/connections/${provider}`, headers })

async function dropboxSetup (t: { teardown (fn: () => unknown): void }) {
  const revocation = await startRevocationStandIn(t)
  const dropbox = await startProvider(t, 'dropbox', { revokeUrl: revocation.dropboxUrl, revocation: 'dropbox', authorizeParams: { token_access_type: 'offline' } })
  const app = await build(t, storageEnv([dropbox]))
  const user = await given(app).signedIn()
  const flow = await connect(app, user.headers, dropbox)
  return { app, user, dropbox, revocation, flow }
}

t.test('deleteStorageConnection › valid › Dropbox: its documented call (POST, the access token as bearer, no body); 200 revokes and forgets', async (t) => {
  const { app, user, revocation, flow } = await dropboxSetup(t)

  const res = await disconnect(app, user.headers, 'dropbox')

  t.equal(res.statusCode, 204)
  t.same(revocation.calls.map(({ path, method, authorization, contentType, body, status }) => ({ path, method, authorization, contentType, body, status })),
    [{ path: '/2/auth/token/revoke', method: 'POST', authorization: `Bearer ${flow.accessToken}`, contentType: undefined, body: '', status: 200 }])
  t.ok(revocation.revoked.has(flow.accessToken!), 'revoked at Dropbox (its refresh token with it)')
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'), 'forgotten')
})

t.test('deleteStorageConnection › valid › Dropbox: a token revoked already (the app unlinked at Dropbox) is 401 invalid_access_token: forgotten', async (t) => {
  const { app, user, revocation, flow } = await dropboxSetup(t)
  revocation.revoke(flow.accessToken!)

  t.equal((await disconnect(app, user.headers, 'dropbox')).statusCode, 204)
  t.same(revocation.calls.map((c) => c.status), [401])
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'))
})

t.test('deleteStorageConnection › valid › Dropbox: an expired access token is refreshed and the fresh one revoked (the grant would live on otherwise)', async (t) => {
  const { app, user, dropbox, revocation, flow } = await dropboxSetup(t)
  revocation.expire(flow.accessToken!)

  t.equal((await disconnect(app, user.headers, 'dropbox')).statusCode, 204)

  t.match(dropbox.tokenRequests.at(-1), { grant_type: 'refresh_token', refresh_token: flow.refreshToken })
  const fresh = (dropbox.tokenAnswers.at(-1)!.body as { access_token: string }).access_token
  t.same(revocation.calls.map((c) => [c.authorization, c.status]), [[`Bearer ${flow.accessToken}`, 401], [`Bearer ${fresh}`, 200]])
  t.ok(revocation.revoked.has(fresh))
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'))
})

t.test('deleteStorageConnection › valid › Dropbox: expired, and the refresh token refused (invalid_grant): revoked already, forgotten', async (t) => {
  const { app, user, dropbox, revocation, flow } = await dropboxSetup(t)
  revocation.expire(flow.accessToken!)
  dropbox.answerTokenOnce(400, { error: 'invalid_grant', error_description: 'refresh token is invalid or revoked' })

  t.equal((await disconnect(app, user.headers, 'dropbox')).statusCode, 204)
  t.same(revocation.calls.map((c) => c.status), [401], 'nothing left to revoke')
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'))
})

t.test('deleteStorageConnection › valid › Dropbox: two disconnects at once revoke the grant once and both end disconnected', async (t) => {
  const { app, user, revocation, flow } = await dropboxSetup(t)

  const answers = await Promise.all([disconnect(app, user.headers, 'dropbox'), disconnect(app, user.headers, 'dropbox')])

  for (const res of answers) t.ok([204, 404].includes(res.statusCode), `answered ${res.statusCode}`)
  t.ok(answers.some((res) => res.statusCode === 204))
  t.same(revocation.calls.filter((c) => c.status === 200).map((c) => c.authorization), [`Bearer ${flow.accessToken}`], 'revoked once; a second call finds it revoked already')
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'))
})

t.test('deleteStorageConnection › faults › Dropbox refusing in any other way: 503, the connection kept, until it revokes', async (t) => {
  const { app, user, dropbox, revocation, flow } = await dropboxSetup(t)
  const answers: Array<[number, unknown]> = [
    [400, 'Error in call to API function "auth/token/revoke": Bad HTTP "Content-Type" header'],
    [401, revocation.authError('user_suspended')],
    [401, revocation.authError('missing_scope')],
    [403, { error_summary: 'access_denied/', error: { '.tag': 'access_denied' } }],
    [429, { error_summary: 'too_many_requests/', error: { reason: { '.tag': 'too_many_requests' } } }],
    [500, ''],
    [503, '']
  ]
  for (const [status, body] of answers) {
    revocation.answerOnce(status, body)
    const res = await disconnect(app, user.headers, 'dropbox')
    t.equal(res.statusCode, 503, `Dropbox answered ${status}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'unavailable')
    t.ok(Number(res.headers['retry-after']) > 0, 'with Retry-After')
    t.ok(await connectionRow(app, user.account.id, 'dropbox'), 'kept')
  }
  // Expired, and the refresh fails (Dropbox's token endpoint down): kept too.
  revocation.expire(flow.accessToken!)
  dropbox.answerTokenOnce(500, { error: 'server_error' })
  t.equal((await disconnect(app, user.headers, 'dropbox')).statusCode, 503, 'refresh failed')
  t.ok(await connectionRow(app, user.account.id, 'dropbox'), 'kept')

  t.equal((await disconnect(app, user.headers, 'dropbox')).statusCode, 204, 'revoked once Dropbox does')
  t.notOk(await connectionRow(app, user.account.id, 'dropbox'))
})

t.test('deleteStorageConnection › valid › every provider shipped in db/storage-providers.json says how it revokes, and is forgotten only on its revoked or revoked-already answer', async (t) => {
  const shipped = JSON.parse(await readFile(providersFile, 'utf8')) as { providers: ProviderEntry[] }
  t.ok(shipped.providers.length >= 2)
  const revocation = await startRevocationStandIn(t)
  const local = (p: ProviderEntry, fake: RevocationStandIn) => p.revocation === 'dropbox' ? fake.dropboxUrl : fake.googleUrl
  // What each style answers for "revoked already", and answers that are no revocation.
  const alreadyRevoked = (p: ProviderEntry): [number, unknown] => p.revocation === 'dropbox' ? [401, revocation.authError('invalid_access_token')] : [400, { error: 'invalid_token', error_description: 'Token expired or revoked' }]
  const refusals: Array<[number, unknown]> = [[400, { error: 'invalid_request' }], [401, { error: 'invalid_client' }], [403, ''], [404, ''], [429, ''], [500, '']]

  const fakes: FakeProvider[] = []
  for (const p of shipped.providers) {
    t.ok(p.revokeUrl, `${p.code} has a revoke URL`)
    t.ok(p.revocation === 'oauth2' || p.revocation === 'dropbox', `${p.code} says how it revokes (${p.revocation})`)
    const { clientId: _id, clientSecret: _secret, authorizeUrl: _a, tokenUrl: _t, userInfoUrl: _u, revokeUrl: _r, ...rest } = p
    fakes.push(await startProvider(t, p.code, { ...rest, revokeUrl: local(p, revocation) }))
  }
  const app = await build(t, storageEnv(fakes))
  const user = await given(app).signedIn()
  for (const [i, fake] of fakes.entries()) {
    const p = shipped.providers[i]!
    await connect(app, user.headers, fake)
    for (const [status, body] of refusals) {
      revocation.answerOnce(status, body)
      t.equal((await disconnect(app, user.headers, p.code)).statusCode, 503, `${p.code}: ${status} is no revocation`)
      t.ok(await connectionRow(app, user.account.id, p.code), `${p.code}: kept after ${status}`)
    }
    revocation.answerOnce(...alreadyRevoked(p))
    t.equal((await disconnect(app, user.headers, p.code)).statusCode, 204, `${p.code}: revoked already`)
    t.notOk(await connectionRow(app, user.account.id, p.code))

    const flow = await connect(app, user.headers, fake)
    const before = revocation.calls.length
    t.equal((await disconnect(app, user.headers, p.code)).statusCode, 204, `${p.code}: revoked`)
    t.equal(revocation.calls[before]?.status, 200, `${p.code}: the stand-in accepted the call as the provider documents it`)
    t.ok(revocation.revoked.has(p.revocation === 'dropbox' ? flow.accessToken! : flow.refreshToken!), `${p.code}: the grant is revoked`)
  }
})

t.test('storage › start-up refuses a provider whose revocation style is unknown', async (t) => {
  const drive = await startProvider(t, 'drive')
  await t.rejects(build(t, storageEnv([{ ...drive.entry, revocation: 'carrier-pigeon' as never }])), /storage: provider drive has an unknown revocation "carrier-pigeon"/)
})
