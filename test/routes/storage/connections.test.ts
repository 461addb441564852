import t from 'tap'
import { storageDepsOf } from '../../../routes/storage/feature.js'
import { freshTokens } from '../../../services/storage/storage.service.js'
import { createTokenCipher, parseTokenKeys } from '../../../services/storage/storage.crypto.js'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { closedPort, connect, connectionRow, silentServer, startProvider, startProviders, storageEnv, tokenKey } from '../../helpers/storage-oauth.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
type Tokens = Awaited<ReturnType<typeof freshTokens>>

const list = (app: App, headers: Record<string, string>) => app.inject({ method: 'GET', url: '/v1/storage/connections', headers })
const disconnect = (app: App, headers: Record<string, string>, provider: string) =>
  app.inject({ method: 'DELETE', url: `/v1/storage/connections/${provider}`, headers })
/** freshTokens answers in no particular order. */
const byProvider = (tokens: Tokens) => [...tokens].sort((a, b) => a.provider.localeCompare(b.provider))
/** Makes the stored tokens expire in `ms` (a negative value: already expired). */
const expireIn = (app: App, userId: string, provider: string, ms: number) =>
  app.db.updateTable('storage_connection').set({ expires_at: new Date(Date.now() + ms) }).where('user_id', '=', userId).where('provider', '=', provider).execute()

// ---------------------------------------------------------------------------------------------------------
// listStorageConnections

t.test('listStorageConnections › valid › my connections only, with provider, address, connected at and status', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const me = await given(app).signedIn()
  const other = await given(app).signedIn()
  const nobody = await given(app).signedIn()
  const before = Date.now()
  await connect(app, me.headers, drive)
  await connect(app, me.headers, box)
  drive.email = 'other@drive.example.test'
  await connect(app, other.headers, drive)

  const res = await list(app, me.headers)

  t.equal(res.statusCode, 200)
  t.equal(res.headers['cache-control'], 'private, no-store')
  const items = res.json().items as Array<Record<string, string>>
  t.same(items.map((i) => i.provider), ['box', 'drive'], 'in provider order')
  t.same(Object.keys(items[0]!).sort(), ['accountEmail', 'connectedAt', 'provider', 'status'], 'no tokens, no key id')
  t.match(items, [{ provider: 'box', accountEmail: box.email, status: 'connected' }, { provider: 'drive', accountEmail: /^someone-/, status: 'connected' }])
  for (const item of items) t.ok(Date.parse(item.connectedAt!) >= before - 1000 && Date.parse(item.connectedAt!) <= Date.now() + 1000)
  t.notOk(res.body.includes('other@drive.example.test'), 'the other user\'s connection never appears')

  t.match((await list(app, other.headers)).json(), { items: [{ provider: 'drive', accountEmail: 'other@drive.example.test' }] })
  t.same((await list(app, nobody.headers)).json(), { items: [] })
})

t.test('listStorageConnections › valid › needs_reauth once the provider refused a refresh (invalid_grant)', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)
  await connect(app, user.headers, box)
  await expireIn(app, user.account.id, 'drive', 60_000)

  drive.answerTokenOnce(400, { error: 'invalid_grant', error_description: 'Token has been expired or revoked.' })
  const tokens = await app.storageTokens(user.account.id)

  t.same(tokens.map((x) => x.provider), ['box'], 'nothing usable for drive')
  t.match(drive.tokenRequests.at(-1), { grant_type: 'refresh_token' })
  const res = await list(app, user.headers)
  t.match(res.json(), { items: [{ provider: 'box', status: 'connected' }, { provider: 'drive', status: 'needs_reauth' }] })

  // Not asked again while it needs the user; connecting again makes it usable.
  const asked = drive.tokenRequests.length
  t.same((await app.storageTokens(user.account.id)).map((x) => x.provider), ['box'])
  t.equal(drive.tokenRequests.length, asked, 'a connection that needs re-authorization is not refreshed')
  await connect(app, user.headers, drive)
  t.match((await list(app, user.headers)).json(), { items: [{ provider: 'box', status: 'connected' }, { provider: 'drive', status: 'connected' }] })
})

t.test('listStorageConnections › valid › a refresh failing otherwise (500, timeout) is an error for the caller, not needs_reauth', async (t) => {
  const silent = await silentServer(t)
  const drive = await startProvider(t, 'drive')
  const app = await build(t, storageEnv([drive], { STORAGE_HTTP_TIMEOUT_MS: '200' }))
  const user = await given(app).signedIn()
  const flow = await connect(app, user.headers, drive)
  await expireIn(app, user.account.id, 'drive', 60_000)
  const before = (await connectionRow(app, user.account.id, 'drive'))!

  drive.answerTokenOnce(500, { error: 'server_error' })
  await t.rejects(app.storageTokens(user.account.id), { code: 'unavailable' })

  // The token endpoint stops answering.
  const deps = await storageDepsOf(app)
  const unanswered = { ...deps, providers: deps.providers.map((p) => ({ ...p, tokenUrl: `${silent.url}/token` })) }
  await t.rejects(freshTokens(app.db, unanswered, user.account.id), { code: 'unavailable', message: /timed out/ })
  t.equal(silent.requests, 1)

  t.same(await connectionRow(app, user.account.id, 'drive'), before, 'the connection and its tokens are untouched')
  t.match((await list(app, user.headers)).json(), { items: [{ provider: 'drive', status: 'connected' }] })
  t.notOk(JSON.stringify(before).includes(flow.refreshToken!))
})

t.test('listStorageConnections › valid › tokens about to expire are refreshed (new access token stored, encrypted under the current key)', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const first = await connect(app, user.headers, drive)
  const other = await connect(app, user.headers, box)
  await expireIn(app, user.account.id, 'drive', 4 * 60_000)
  await expireIn(app, user.account.id, 'box', 10 * 60_000)
  const askedBefore = drive.tokenRequests.length

  const tokens = byProvider(await app.storageTokens(user.account.id))

  t.equal(drive.tokenRequests.length, askedBefore + 1, 'one refresh')
  t.same(drive.tokenRequests.at(-1), { grant_type: 'refresh_token', refresh_token: first.refreshToken, client_id: drive.clientId, client_secret: drive.clientSecret })
  const answer = drive.tokenAnswers.at(-1)!.body as { access_token: string, refresh_token: string }
  t.not(answer.access_token, first.accessToken)
  t.same(tokens, [{ provider: 'box', accessToken: other.accessToken }, { provider: 'drive', accessToken: answer.access_token }], 'box (10 minutes left) is not refreshed')
  t.equal(box.tokenRequests.length, 1, 'only the first exchange at box')

  const row = (await connectionRow(app, user.account.id, 'drive'))!
  t.equal(row.key_id, 'k1')
  t.equal((await storageDepsOf(app)).cipher.decrypt(row.key_id, row.access_token), answer.access_token)
  t.equal((await storageDepsOf(app)).cipher.decrypt(row.key_id, row.refresh_token!), answer.refresh_token, 'the rotated refresh token')
  t.notOk(JSON.stringify(row).includes(answer.access_token), 'stored encrypted')
  t.ok(row.expires_at!.getTime() > Date.now() + 3500_000, 'a new expiry')
  t.match((await list(app, user.headers)).json(), { items: [{ provider: 'box', status: 'connected' }, { provider: 'drive', status: 'connected' }] })

  // Fresh now: the next call asks nobody. Expired and no new refresh token: the stored one is kept.
  await app.storageTokens(user.account.id)
  t.equal(drive.tokenRequests.length, askedBefore + 1)
  await expireIn(app, user.account.id, 'drive', -1000)
  drive.omitRefreshTokenOnce()
  await app.storageTokens(user.account.id)
  const kept = (await connectionRow(app, user.account.id, 'drive'))!
  t.equal((await storageDepsOf(app)).cipher.decrypt(kept.key_id, kept.refresh_token!), answer.refresh_token, 'the refresh token is kept')
})

t.test('listStorageConnections › valid › key rotation: tokens under key A still decrypt when the keys become B,A, and move to B on refresh', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const keyA = tokenKey('A')
  const keyB = tokenKey('B')
  const before = await build(t, { ...env, STORAGE_TOKEN_KEYS: keyA })
  const user = await given(before).signedIn()
  const onDrive = await connect(before, user.headers, drive)
  const onBox = await connect(before, user.headers, box)
  const other = await given(before).signedIn()
  const othersBox = await connect(before, other.headers, box)
  t.equal((await connectionRow(before, user.account.id, 'drive'))!.key_id, 'A')

  // The same database, a new key first.
  const app = await build(t, { ...env, STORAGE_TOKEN_KEYS: `${keyB},${keyA}`, DATABASE_URL: before.config.db.url! })
  t.equal((await storageDepsOf(app)).cipher.keyId, 'B', 'the first key encrypts')
  await expireIn(app, user.account.id, 'drive', 60_000)

  const tokens = byProvider(await app.storageTokens(user.account.id))

  const answer = drive.tokenAnswers.at(-1)!.body as { access_token: string, refresh_token: string }
  t.match(drive.tokenRequests.at(-1), { grant_type: 'refresh_token', refresh_token: onDrive.refreshToken }, 'the refresh token decrypted under A')
  t.same(tokens, [{ provider: 'box', accessToken: onBox.accessToken }, { provider: 'drive', accessToken: answer.access_token }], 'box, not due, still decrypts under A')
  const drv = (await connectionRow(app, user.account.id, 'drive'))!
  const bx = (await connectionRow(app, user.account.id, 'box'))!
  t.equal(drv.key_id, 'B', 'refreshed tokens are under B')
  t.equal(bx.key_id, 'A', 'untouched tokens stay under A')
  const onlyA = createTokenCipher(parseTokenKeys(keyA, 'unused'))
  const onlyB = createTokenCipher(parseTokenKeys(keyB, 'unused'))
  t.equal(onlyB.decrypt('B', drv.access_token), answer.access_token)
  t.equal(onlyB.decrypt('B', drv.refresh_token!), answer.refresh_token)
  t.throws(() => onlyA.decrypt('A', drv.access_token), 'key A cannot read it')

  // A key that is no longer listed cannot be used: the configuration must keep every key in use.
  t.throws(() => onlyB.decrypt('A', bx.access_token), /no key A/)

  // Disconnecting tokens still under A revokes the right tokens.
  t.equal((await disconnect(app, user.headers, 'box')).statusCode, 204)
  t.ok(await until(() => box.revocations.length === 1))
  t.same(box.revocations[0], { authorization: `Bearer ${onBox.accessToken}`, body: { token: onBox.refreshToken } })

  // Connecting again without a new refresh token: the one kept under A is re-encrypted under B.
  t.equal((await connectionRow(app, other.account.id, 'box'))!.key_id, 'A')
  box.omitRefreshTokenOnce()
  const again = await connect(app, other.headers, box)
  t.equal(again.outcome!.status, 'connected')
  const moved = (await connectionRow(app, other.account.id, 'box'))!
  t.equal(moved.key_id, 'B')
  t.equal(onlyB.decrypt('B', moved.refresh_token!), othersBox.refreshToken, 'the old refresh token, now under B')
  t.equal(onlyB.decrypt('B', moved.access_token), again.accessToken)
})

t.test('listStorageConnections › insufficient permissions › no token or a bad one is 401, no account scope 403', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)

  const none = await app.inject({ method: 'GET', url: '/v1/storage/connections' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.json().code, 'unauthorized')
  t.equal((await list(app, bearer('garbage'))).statusCode, 401)
  const noScope = await list(app, bearer(await given(app).token({ sub: user.account.id, scopes: ['containers'] })))
  t.equal(noScope.statusCode, 403)
  t.equal(noScope.json().code, 'forbidden')
  t.notOk(noScope.body.includes(drive.email!))
})

// ---------------------------------------------------------------------------------------------------------
// deleteStorageConnection

t.test('deleteStorageConnection › valid › revokes at the provider with the tokens, then forgets the connection (204)', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const flow = await connect(app, user.headers, drive)
  await connect(app, user.headers, box)

  const res = await disconnect(app, user.headers, 'drive')

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  t.ok(await until(() => drive.revocations.length === 1), 'the provider was asked to revoke')
  t.same(drive.revocations, [{ authorization: `Bearer ${flow.accessToken}`, body: { token: flow.refreshToken } }], 'the refresh token, authorized by the access token')
  t.equal(box.revocations.length, 0)
  t.notOk(await connectionRow(app, user.account.id, 'drive'), 'forgotten')
  t.ok(await connectionRow(app, user.account.id, 'box'), 'the other provider stays')
  t.match((await list(app, user.headers)).json(), { items: [{ provider: 'box' }] })

  const again = await disconnect(app, user.headers, 'drive')
  t.equal(again.statusCode, 404, 'already disconnected')
})

// Revoked already (400 invalid_token, Dropbox's 401 invalid_access_token) forgets: test/routes/storage/revocation.test.ts.
t.test('deleteStorageConnection › valid › a bare 400 is no revocation: the connection is kept (issue 19); no revoke URL: just forgotten', async (t) => {
  const drive = await startProvider(t, 'drive')
  const box = await startProvider(t, 'box', { revokeUrl: undefined })
  const app = await build(t, storageEnv([drive, box]))
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)
  await connect(app, user.headers, box)

  drive.answerRevokeOnce(400)
  t.equal((await disconnect(app, user.headers, 'drive')).statusCode, 503)
  t.ok(await connectionRow(app, user.account.id, 'drive'))

  t.equal((await disconnect(app, user.headers, 'box')).statusCode, 204)
  t.notOk(await connectionRow(app, user.account.id, 'box'))
  t.equal(box.revocations.length, 0)
})

t.test('deleteStorageConnection › valid › a connection without a refresh token revokes its access token', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  drive.omitRefreshTokenOnce()
  const flow = await connect(app, user.headers, drive)
  t.equal((await connectionRow(app, user.account.id, 'drive'))!.refresh_token, null)

  t.equal((await disconnect(app, user.headers, 'drive')).statusCode, 204)
  t.ok(await until(() => drive.revocations.length === 1))
  t.same(drive.revocations[0]!.body, { token: flow.accessToken })
})

t.test('deleteStorageConnection › faults › the revoke endpoint answers 5xx, is down or never answers: 503, the connection is kept', async (t) => {
  const silent = await silentServer(t)
  const drive = await startProvider(t, 'drive')
  const box = await startProvider(t, 'box', { revokeUrl: `http://127.0.0.1:${await closedPort()}/revoke` })
  const slow = await startProvider(t, 'slow', { revokeUrl: `${silent.url}/revoke` })
  const app = await build(t, storageEnv([drive, box, slow], { STORAGE_HTTP_TIMEOUT_MS: '200' }))
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)
  await connect(app, user.headers, box)
  await connect(app, user.headers, slow)

  for (const status of [500, 503]) {
    drive.answerRevokeOnce(status)
    const res = await disconnect(app, user.headers, 'drive')
    t.equal(res.statusCode, 503, `revocation answered ${status}`)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'unavailable')
    t.ok(await connectionRow(app, user.account.id, 'drive'), 'kept')
  }
  const down = await disconnect(app, user.headers, 'box')
  t.equal(down.statusCode, 503, 'unreachable')
  t.equal(down.json().code, 'unavailable')
  t.ok(await connectionRow(app, user.account.id, 'box'), 'kept')

  const hanging = await disconnect(app, user.headers, 'slow')
  t.equal(hanging.statusCode, 503, 'timed out')
  t.equal(silent.requests, 1)
  t.ok(await connectionRow(app, user.account.id, 'slow'), 'kept')

  t.match((await list(app, user.headers)).json(), { items: [{ provider: 'box', status: 'connected' }, { provider: 'drive', status: 'connected' }, { provider: 'slow', status: 'connected' }] })
  // Once the provider is back, the disconnect goes through.
  t.equal((await disconnect(app, user.headers, 'drive')).statusCode, 204)
})

t.test('deleteStorageConnection › insufficient permissions › no token or a bad one is 401, no account scope 403; nothing revoked or forgotten', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)

  const none = await app.inject({ method: 'DELETE', url: '/v1/storage/connections/drive' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.json().code, 'unauthorized')
  t.equal((await disconnect(app, bearer('garbage'), 'drive')).statusCode, 401)
  const noScope = await disconnect(app, bearer(await given(app).token({ sub: user.account.id, scopes: ['containers'] })), 'drive')
  t.equal(noScope.statusCode, 403)
  t.equal(noScope.json().code, 'forbidden')

  t.equal(drive.revocations.length, 0)
  t.ok(await connectionRow(app, user.account.id, 'drive'), 'still connected')
})

t.test('deleteStorageConnection › insufficient permissions › another user’s connection cannot be deleted (404), theirs stays', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const owner = await given(app).signedIn()
  const intruder = await given(app).signedIn()
  await connect(app, owner.headers, drive)

  const res = await disconnect(app, intruder.headers, 'drive')

  t.equal(res.statusCode, 404, 'as if it did not exist')
  t.equal(res.json().code, 'not_found')
  t.equal(drive.revocations.length, 0, 'nothing revoked')
  t.ok(await connectionRow(app, owner.account.id, 'drive'), 'the owner\'s connection stays')
  t.match((await list(app, owner.headers)).json(), { items: [{ provider: 'drive', status: 'connected' }] })
})

t.test('deleteStorageConnection › invalid input › a malformed provider code is 400', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  for (const provider of ['Drive', 'drive%21', 'x'.repeat(41)]) {
    const res = await disconnect(app, user.headers, provider)
    t.equal(res.statusCode, 400, provider)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed')
  }
})

t.test('deleteStorageConnection › non-existing › not connected, or an unknown provider: 404 not_found', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  await connect(app, user.headers, drive)

  const notConnected = await disconnect(app, user.headers, 'box')
  t.equal(notConnected.statusCode, 404)
  t.match(notConnected.headers['content-type'], /^application\/problem\+json/)
  t.equal(notConnected.json().code, 'not_found')
  const unknown = await disconnect(app, user.headers, 'onedrive')
  t.equal(unknown.statusCode, 404)
  t.equal(unknown.json().code, 'not_found')
  t.equal(box.revocations.length + drive.revocations.length, 0)
  t.ok(await connectionRow(app, user.account.id, 'drive'), 'the drive connection is untouched')
})
