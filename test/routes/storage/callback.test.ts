import { createHash } from 'node:crypto'
import { Writable } from 'node:stream'
import t, { type Test } from 'tap'
import { buildApp } from '../../../app.js'
import { storageDepsOf } from '../../../routes/storage/feature.js'
import { build, testConfig, type Overrides } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import {
  authorize, authorizeIn, Browser, callback, clientRedirect, closedPort, connect, connectionRow, silentServer, startProvider, startProviders, storageEnv, type FakeProvider
} from '../../helpers/storage-oauth.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const connectionCount = async (app: App) =>
  Number((await app.db.selectFrom('storage_connection').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

/** A signed-in user who has started connecting `provider`, opened our page in a browser and been through the provider's authorize step. */
async function authorized (app: App, provider: FakeProvider) {
  const user = await given(app).signedIn()
  return { user, ...await authorizeIn(app, user.headers, provider) }
}

/** The redirect went to the app's storage page with exactly this outcome, and the answer is not cached. */
function redirectsWith (t: Test, back: Awaited<ReturnType<typeof callback>>, outcome: Record<string, string>) {
  t.equal(back.res.statusCode, 302)
  t.equal(back.res.headers['cache-control'], 'no-store')
  t.equal(`${back.location?.origin}${back.location?.pathname}`, clientRedirect, 'to STORAGE_CLIENT_REDIRECT')
  t.same(back.outcome, outcome)
  t.equal(back.res.body, '', 'no body')
}

t.test('storageCallback › valid › connects: 302 to the app, the account address from userinfo, tokens encrypted under the current key', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()

  const flow = await connect(app, user.headers, drive)

  redirectsWith(t, flow, { provider: 'drive', status: 'connected' })
  t.match(String(flow.res.headers['set-cookie']), /^fractal_storage=; .*Path=\/v1\/storage/, 'the nonce cookie is cleared, on its path')
  t.equal(flow.browser.jar.size, 0, 'the browser no longer holds it')
  t.ok(flow.accessToken && flow.refreshToken, 'the provider issued an access and a refresh token')
  const row = await connectionRow(app, user.account.id, 'drive')
  t.match(row, { user_id: user.account.id, provider: 'drive', account_email: drive.email, key_id: 'k1', status: 'connected' })
  const expiresIn = row!.expires_at!.getTime() - Date.now()
  t.ok(expiresIn > 3500_000 && expiresIn <= 3600_000, 'expires_at from expires_in (an hour)')
  const raw = JSON.stringify(row)
  t.notOk(raw.includes(flow.accessToken!), 'the access token is not stored in clear')
  t.notOk(raw.includes(flow.refreshToken!), 'the refresh token is not stored in clear')
  t.equal((await storageDepsOf(app)).cipher.decrypt(row!.key_id, row!.access_token), flow.accessToken)
  t.equal((await storageDepsOf(app)).cipher.decrypt(row!.key_id, row!.refresh_token!), flow.refreshToken)

  // What the provider received: the code with the verifier behind the challenge, our client, our callback.
  const challenge = new URL(flow.authorizationUrl).searchParams.get('code_challenge')
  t.match(flow.tokenRequest, {
    grant_type: 'authorization_code',
    code: flow.code,
    redirect_uri: (await storageDepsOf(app)).callbackUrl,
    client_id: drive.clientId,
    client_secret: drive.clientSecret,
    code_verifier: /^[A-Za-z0-9_-]{43,128}$/
  })
  t.equal(createHash('sha256').update(flow.tokenRequest!.code_verifier!).digest('base64url'), challenge, 'code_verifier matches the S256 challenge')
  t.same(drive.userinfoCalls, [{ authorization: `Bearer ${flow.accessToken}` }], 'userinfo asked with the new access token')

  // Nothing secret in the redirect.
  const location = String(flow.res.headers.location)
  for (const secret of [flow.code, flow.state, flow.accessToken!, flow.refreshToken!, flow.tokenRequest!.code_verifier!]) {
    t.notOk(location.includes(secret), 'the redirect carries no code, state, token or verifier')
  }

  const list = await app.inject({ method: 'GET', url: '/v1/storage/connections', headers: user.headers })
  t.match(list.json(), { items: [{ provider: 'drive', accountEmail: drive.email, status: 'connected' }] })
})

t.test('storageCallback › valid › connecting again: new access token; when the provider omits the refresh token the stored one is kept', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const first = await connect(app, user.headers, drive)
  const before = (await connectionRow(app, user.account.id, 'drive'))!

  drive.omitRefreshTokenOnce()
  drive.email = 'renamed@drive.example.test'
  const second = await connect(app, user.headers, drive)

  redirectsWith(t, second, { provider: 'drive', status: 'connected' })
  t.ok(second.accessToken, 'a new access token')
  t.equal(second.refreshToken, undefined, 'the provider sent no refresh token this time')
  t.not(second.accessToken, first.accessToken)
  t.equal(await connectionCount(app), 1, 'still one connection')
  const row = (await connectionRow(app, user.account.id, 'drive'))!
  const cipher = (await storageDepsOf(app)).cipher
  t.equal(cipher.decrypt(row.key_id, row.access_token), second.accessToken, 'the new access token')
  t.equal(cipher.decrypt(row.key_id, row.refresh_token!), first.refreshToken, 'the first refresh token, kept')
  t.not(row.refresh_token, before.refresh_token, 're-encrypted (a fresh IV), not copied')
  t.equal(row.account_email, 'renamed@drive.example.test', 'the address as the provider says now')
  t.same(row.connected_at, before.connected_at, 'connected_at is the first connection')
  t.notOk(JSON.stringify(row).includes(first.refreshToken!))

  // And when it does send one, the new one replaces it.
  const third = await connect(app, user.headers, drive)
  const last = (await connectionRow(app, user.account.id, 'drive'))!
  t.equal(cipher.decrypt(last.key_id, last.refresh_token!), third.refreshToken)
})

t.test('storageCallback › valid › each provider is its own connection; no address from userinfo is fine', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  box.email = null

  redirectsWith(t, await connect(app, user.headers, drive), { provider: 'drive', status: 'connected' })
  redirectsWith(t, await connect(app, user.headers, box), { provider: 'box', status: 'connected' })

  t.equal(drive.tokenRequests.length, 1, 'the drive code went to drive')
  t.equal(box.tokenRequests.length, 1, 'the box code went to box')
  t.equal(box.tokenRequests[0]!.client_id, box.clientId)
  const list = await app.inject({ method: 'GET', url: '/v1/storage/connections', headers: user.headers })
  t.match(list.json(), { items: [{ provider: 'box', accountEmail: null, status: 'connected' }, { provider: 'drive', accountEmail: drive.email, status: 'connected' }] })
})

t.test('storageCallback › valid › the connection belongs to the user who started it; another user\'s token on the callback changes nothing', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { user, code, state, browser } = await authorized(app, drive)
  const other = await given(app).signedIn()

  // The callback needs no token; sending another user's does not change whose connection it is.
  const res = await browser.get(app, `/v1/storage/callback?${new URLSearchParams({ state, code }).toString()}`, other.headers)

  t.equal(res.statusCode, 302)
  t.ok(await connectionRow(app, user.account.id, 'drive'), 'the starter is connected')
  t.notOk(await connectionRow(app, other.account.id, 'drive'), 'the other user is not')
})

t.test('storageCallback › invalid input › a missing, unknown or forged state: invalid_state, no exchange, nothing stored', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { code, state, browser } = await authorized(app, drive)

  // From the flow's own browser: its cookie does not make a wrong state good.
  redirectsWith(t, await callback(app, { code }, browser), { status: 'error', reason: 'invalid_state' })
  redirectsWith(t, await callback(app, { state: 'made-up-state', code }, browser), { status: 'error', reason: 'invalid_state' })
  redirectsWith(t, await callback(app, { state: `${state.slice(0, -1)}${state.endsWith('A') ? 'B' : 'A'}`, code }, browser), { status: 'error', reason: 'invalid_state' })
  redirectsWith(t, await callback(app, {}, browser), { status: 'error', reason: 'invalid_state' })
  redirectsWith(t, await callback(app, { state: '', code }, browser), { status: 'error', reason: 'invalid_state' })

  t.equal(drive.tokenRequests.length, 0, 'no code was exchanged')
  t.equal(await connectionCount(app), 0)
  // The real state is still good: the forged ones consumed neither it nor the browser's cookie.
  redirectsWith(t, await callback(app, { state, code }, browser), { provider: 'drive', status: 'connected' })
})

t.test('storageCallback › invalid input › a state used twice: the second use is invalid_state and changes nothing, even with the cookie kept', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { user, code, state, authorizationUrl, browser } = await authorized(app, drive)
  // Someone keeps a copy of the browser's cookie before the callback clears it.
  const copy = new Browser()
  for (const [name, cookie] of browser.jar) copy.jar.set(name, { ...cookie })

  const first = await callback(app, { state, code }, browser)
  redirectsWith(t, first, { provider: 'drive', status: 'connected' })
  t.equal(browser.jar.size, 0, 'the callback cleared the cookie')
  const stored = await connectionRow(app, user.account.id, 'drive')
  // A replay, even with a fresh code from the provider for the same authorization URL, from either browser.
  const again = await authorize(authorizationUrl)
  redirectsWith(t, await callback(app, { state, code: again.code }, browser), { status: 'error', reason: 'invalid_state' })
  const another = await authorize(authorizationUrl)
  redirectsWith(t, await callback(app, { state, code: another.code }, copy), { status: 'error', reason: 'invalid_state' })

  t.equal(drive.tokenRequests.length, 1, 'only the first use exchanged a code')
  t.same(await connectionRow(app, user.account.id, 'drive'), stored, 'the connection is untouched')
})

t.test('storageCallback › invalid input › the same state sent several times at once from its browser: exactly one exchange, one connection', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { code, state, browser } = await authorized(app, drive)

  // Every request leaves with the cookie (each reads the jar before any answer clears it).
  const outcomes = await Promise.all(Array.from({ length: 6 }, () => callback(app, { state, code }, browser)))

  t.same(outcomes.map((o) => o.outcome!.status).sort(), ['connected', 'error', 'error', 'error', 'error', 'error'])
  t.same(outcomes.filter((o) => o.outcome!.status === 'error').map((o) => o.outcome!.reason), Array(5).fill('invalid_state'))
  t.equal(drive.tokenRequests.length, 1)
  t.equal(await connectionCount(app), 1)
})

t.test('storageCallback › invalid input › an expired state: invalid_state, nothing stored', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { code, state, browser } = await authorized(app, drive)

  // Redis expires it (as after 10 minutes).
  await app.redis.pexpire(`storage-state:${state}`, 1)
  t.ok(await until(async () => await app.redis.exists(`storage-state:${state}`) === 0), 'the state expired')

  redirectsWith(t, await callback(app, { state, code }, browser), { status: 'error', reason: 'invalid_state' })
  t.equal(drive.tokenRequests.length, 0)
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › the user refused (access_denied) or the provider failed: that reason, nothing stored, state used up', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)

  const refused = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: refused.state, error: 'access_denied', error_description: 'The user said no' }, refused.browser), { provider: 'drive', status: 'error', reason: 'access_denied' })
  redirectsWith(t, await callback(app, { state: refused.state, code: refused.code }, refused.browser), { status: 'error', reason: 'invalid_state' })

  const failed = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: failed.state, error: 'server_error' }, failed.browser), { provider: 'drive', status: 'error', reason: 'provider_error' })

  const noCode = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: noCode.state }, noCode.browser), { provider: 'drive', status: 'error', reason: 'missing_code' })

  // An error beside a code: the error wins, the code is not exchanged.
  const both = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: both.state, code: both.code, error: 'access_denied' }, both.browser), { provider: 'drive', status: 'error', reason: 'access_denied' })

  t.equal(drive.tokenRequests.length, 0, 'no exchange')
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › the token endpoint refuses (400, 500, no access token, a code it never issued): exchange_failed, nothing stored', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)

  drive.answerTokenOnce(400, { error: 'invalid_grant', error_description: 'Bad code' })
  const refused = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: refused.state, code: refused.code }, refused.browser), { provider: 'drive', status: 'error', reason: 'exchange_failed' })

  drive.answerTokenOnce(500, { error: 'server_error' })
  const broken = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: broken.state, code: broken.code }, broken.browser), { provider: 'drive', status: 'error', reason: 'exchange_failed' })

  drive.answerTokenOnce(200, { token_type: 'Bearer', expires_in: 3600 })
  const empty = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: empty.state, code: empty.code }, empty.browser), { provider: 'drive', status: 'error', reason: 'exchange_failed' })

  // Not hooked: the mock itself refuses a code it never issued (no PKCE challenge on record).
  const forged = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: forged.state, code: 'a-code-nobody-issued' }, forged.browser), { provider: 'drive', status: 'error', reason: 'exchange_failed' })

  t.equal(drive.tokenRequests.length, 3, 'the hooked answers were asked for (the forged code failed before the hook)')
  t.equal(drive.userinfoCalls.length, 0, 'no userinfo without a token')
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › a token endpoint that never answers or cannot be reached: provider_unavailable, nothing stored', async (t) => {
  const silent = await silentServer(t)
  const drive = await startProvider(t, 'drive', { tokenUrl: `${silent.url}/token` })
  const box = await startProvider(t, 'box', { tokenUrl: `http://127.0.0.1:${await closedPort()}/token` })
  const app = await build(t, storageEnv([drive, box], { STORAGE_HTTP_TIMEOUT_MS: '200' }))

  const slow = await authorized(app, drive)
  redirectsWith(t, await callback(app, { state: slow.state, code: slow.code }, slow.browser), { provider: 'drive', status: 'error', reason: 'provider_unavailable' })
  t.equal(silent.requests, 1, 'the exchange was tried once and abandoned')

  const away = await authorized(app, box)
  redirectsWith(t, await callback(app, { state: away.state, code: away.code }, away.browser), { provider: 'box', status: 'error', reason: 'provider_unavailable' })
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › a provider removed from the config while the user was away: an error redirect with a documented reason', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const before = await build(t, env)
  const { state, code, browser } = await authorized(before, box)
  // The next deployment offers drive only; same database, same Redis.
  const app = await build(t, { ...storageEnv([drive]), DATABASE_URL: before.config.db.url!, REDIS_PREFIX: before.config.redis.prefix })

  const back = await callback(app, { state, code }, browser)

  t.equal(back.res.statusCode, 302)
  t.match(back.outcome, { provider: 'box', status: 'error' })
  // The reasons the operation's description lists, read from the published spec.
  const description: string = app.openapi.document.paths['/v1/storage/callback'].get.description
  t.ok(description.includes(`\`${back.outcome!.reason}\``), `reason ${back.outcome!.reason} is one the spec lists`)
  t.equal(box.tokenRequests.length, 0)
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › an oversized state, code or error is 400', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { state, code } = await authorized(app, drive)

  const queries: Array<Record<string, string>> = [{ state: 's'.repeat(513), code }, { state, code: 'c'.repeat(4097) }, { state, error: 'e'.repeat(257) }]
  for (const query of queries) {
    const res = await app.inject({ method: 'GET', url: `/v1/storage/callback?${new URLSearchParams(query).toString()}` })
    t.equal(res.statusCode, 400)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed')
    t.notOk(res.body.includes(code), 'the code is not echoed')
  }
  t.equal(drive.tokenRequests.length, 0)
  t.equal(await connectionCount(app), 0)
})

t.test('storageCallback › invalid input › the account was deleted before the provider sent the user back: an error redirect, nothing stored', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { user, state, code, browser } = await authorized(app, drive)
  await app.db.deleteFrom('account').where('id', '=', user.account.id).execute()

  const back = await callback(app, { state, code }, browser)

  t.equal(back.res.statusCode, 302, 'a redirect, not a server error')
  t.match(back.outcome, { provider: 'drive', status: 'error' })
  t.equal(await connectionCount(app), 0)
})

/** An app logging at info level into `lines`. */
async function loggingApp (t: Test, env: Overrides) {
  const lines: string[] = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(chunk.toString()); done() } })
  const app = await buildApp(await testConfig(t, { ...env, LOG_LEVEL: 'info' }), { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines }
}

/** Connects, then fails every way the callback can, on an app logging at info level: what was secret, answered and logged. */
async function everyOutcome (t: Test) {
  const { drive, env } = await startProviders(t)
  const { app, lines } = await loggingApp(t, env)
  const secrets: Array<[string, string]> = []
  const answers: string[] = []
  const keep = (back: Awaited<ReturnType<typeof callback>>) => {
    answers.push(JSON.stringify(back.res.headers), back.res.body)
    return back
  }

  const user = await given(app).signedIn()
  const ok = await connect(app, user.headers, drive)
  keep(ok)
  t.ok(ok.nonce, 'the flow ran in a browser holding a nonce')
  secrets.push(['code', ok.code], ['access token', ok.accessToken!], ['refresh token', ok.refreshToken!], ['verifier', ok.tokenRequest!.code_verifier!], ['browser nonce', ok.nonce!], ['ticket', new URL(ok.startUrl).searchParams.get('ticket')!])

  drive.answerTokenOnce(400, { error: 'invalid_grant', error_description: 'code expired' })
  const refused = await authorized(app, drive)
  t.equal(keep(await callback(app, { state: refused.state, code: refused.code }, refused.browser)).outcome!.reason, 'exchange_failed')
  secrets.push(['refused code', refused.code], ['verifier of the refused code', drive.tokenRequests.at(-1)!.code_verifier!])

  const denied = await authorized(app, drive)
  t.equal(keep(await callback(app, { state: denied.state, code: denied.code, error: 'access_denied' }, denied.browser)).outcome!.reason, 'access_denied')
  secrets.push(['code beside an error', denied.code])

  t.equal(keep(await callback(app, { state: ok.state, code: ok.code }, ok.browser)).outcome!.reason, 'invalid_state', 'a replay')
  t.ok(lines.some((l) => l.includes('storage code exchange refused')), 'the refused exchange is logged')
  return { secrets, answers, lines }
}

t.test('storageCallback › invalid input › no code, token, verifier, ticket or browser nonce in any answer (Location included), whatever the outcome', async (t) => {
  const { secrets, answers } = await everyOutcome(t)
  for (const [what, secret] of secrets) t.notOk(answers.some((a) => a.includes(secret)), `no ${what} in any answer`)
})

t.test('storageCallback › invalid input › no code, token, verifier, ticket or browser nonce in any log line, whatever the outcome', async (t) => {
  const { secrets, lines } = await everyOutcome(t)
  t.ok(lines.length > 0)
  for (const [what, secret] of secrets) {
    const leaking = lines.filter((l) => l.includes(secret)).map((l) => (JSON.parse(l) as { msg: string }).msg)
    t.same(leaking, [], `no ${what} in any log line`)
  }
})
