import { createHash } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { startConnection, startProviders } from '../../helpers/storage-oauth.js'

type App = Awaited<ReturnType<typeof build>>

/** This test app's OAuth states in Redis (the client adds the key prefix). */
async function stateKeys (app: App): Promise<string[]> {
  const prefix = app.config.redis.prefix
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await app.redis.scan(cursor, 'MATCH', `${prefix}storage-state:*`, 'COUNT', 1000)
    cursor = next
    found.push(...keys.map((k) => k.slice(prefix.length)))
  } while (cursor !== '0')
  return found
}

t.test('startStorageConnection › valid › answers the provider’s authorization URL with PKCE S256, a state kept in Redis for at most 10 minutes', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, { ...env, PUBLIC_URL: 'https://api.fractal.test' })
  const user = await given(app).signedIn()

  const before = Date.now()
  const res = await startConnection(app, user.headers, 'drive')

  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'private, no-store')
  const { authorizationUrl, expiresAt } = res.json()
  const url = new URL(authorizationUrl)
  t.equal(`${url.origin}${url.pathname}`, drive.entry.authorizeUrl)
  const q = Object.fromEntries(url.searchParams)
  t.match(q, {
    response_type: 'code',
    client_id: drive.clientId,
    redirect_uri: 'https://api.fractal.test/v1/storage/callback',
    scope: drive.entry.scopes.join(' '),
    state: /^[A-Za-z0-9_-]{43,}$/,
    code_challenge: /^[A-Za-z0-9_-]{43}$/,
    code_challenge_method: 'S256',
    access_type: 'offline',
    prompt: 'consent'
  })
  t.notOk(url.searchParams.has('client_secret'), 'the secret stays with us')
  t.notOk(url.searchParams.has('code_verifier'), 'the verifier stays with us')
  const expires = Date.parse(expiresAt)
  t.ok(expires >= before + 599_000 && expires <= Date.now() + 600_000, 'valid for 10 minutes')

  // The state is kept server-side, bound to the user and provider, with the verifier behind the challenge.
  const key = `storage-state:${q.state}`
  const ttl = await app.redis.ttl(key)
  t.ok(ttl > 590 && ttl <= 600, `TTL ${ttl} s is at most 600 s`)
  const saved = JSON.parse((await app.redis.get(key))!) as { userId: string, provider: string, verifier: string }
  t.match(saved, { userId: user.account.id, provider: 'drive', verifier: /^[A-Za-z0-9_-]{43,128}$/ })
  t.equal(createHash('sha256').update(saved.verifier).digest('base64url'), q.code_challenge, 'the challenge is S256 of the stored verifier')
  t.notOk(res.body.includes(saved.verifier), 'the verifier is not in the answer')
})

t.test('startStorageConnection › valid › each start has its own state and verifier; each provider its own client and extra parameters', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()

  const one = new URL((await startConnection(app, user.headers, 'drive')).json().authorizationUrl)
  const two = new URL((await startConnection(app, user.headers, 'drive')).json().authorizationUrl)
  const other = new URL((await startConnection(app, user.headers, 'box')).json().authorizationUrl)

  t.not(one.searchParams.get('state'), two.searchParams.get('state'))
  t.not(one.searchParams.get('code_challenge'), two.searchParams.get('code_challenge'))
  t.equal(other.origin, new URL(box.issuer).origin, 'the box server, not the drive one')
  t.not(other.origin, new URL(drive.issuer).origin)
  t.equal(other.searchParams.get('client_id'), box.clientId)
  t.equal(other.searchParams.get('token_access_type'), 'offline')
  t.notOk(other.searchParams.has('access_type'), 'no other provider\'s parameters')
  t.equal(other.searchParams.get('redirect_uri'), `http://${app.config.host}:${app.config.port}/v1/storage/callback`, 'without PUBLIC_URL: this server')
  t.equal((await stateKeys(app)).length, 3, 'three states kept')
})

t.test('startStorageConnection › insufficient permissions › no token, a bad token or one without the account scope: nothing kept', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)

  const none = await app.inject({ method: 'POST', url: '/v1/storage/connections', payload: { provider: 'drive' } })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /^application\/problem\+json/)
  t.equal(none.json().code, 'unauthorized')

  const garbage = await startConnection(app, bearer('not-a-token'), 'drive')
  t.equal(garbage.statusCode, 401)
  t.equal(garbage.json().code, 'unauthorized')

  const noScope = await startConnection(app, bearer(await given(app).token({ scopes: ['containers'] })), 'drive')
  t.equal(noScope.statusCode, 403)
  t.equal(noScope.json().code, 'forbidden')

  t.same(await stateKeys(app), [], 'no state was kept')
})

t.test('startStorageConnection › invalid input › a missing, malformed or extra field is 400 naming it; nothing kept', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()

  const cases: Array<[unknown, string]> = [
    [{}, '/body/provider'],
    [{ provider: 'Drive!' }, '/body/provider'],
    [{ provider: 'x'.repeat(41) }, '/body/provider'],
    [{ provider: 7 }, '/body/provider'],
    [{ provider: 'drive', scope: 'everything' }, '/body/scope']
  ]
  for (const [payload, field] of cases) {
    const res = await app.inject({ method: 'POST', url: '/v1/storage/connections', payload: payload as object, headers: user.headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed')
    t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `names ${field}`)
  }
  const text = await app.inject({ method: 'POST', url: '/v1/storage/connections', payload: 'provider=drive', headers: { ...user.headers, 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415)
  t.same(await stateKeys(app), [], 'no state was kept')
})

t.test('startStorageConnection › non-existing › an unknown provider, or one without a client id, is 404 not_found', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()

  for (const provider of ['onedrive', 'dropbox', 'google_drive']) {
    const res = await startConnection(app, user.headers, provider)
    t.equal(res.statusCode, 404, provider)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'not_found')
  }
  t.same(await stateKeys(app), [], 'no state was kept')
})
