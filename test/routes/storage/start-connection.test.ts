import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { startConnection, startProviders } from '../../helpers/storage-oauth.js'

type App = Awaited<ReturnType<typeof build>>

/** This test app's OAuth tickets and states in Redis (the client adds the key prefix). */
async function stateKeys (app: App): Promise<string[]> {
  const prefix = app.config.redis.prefix
  const found: string[] = []
  let cursor = '0'
  do {
    const [next, keys] = await app.redis.scan(cursor, 'MATCH', `${prefix}storage-*`, 'COUNT', 1000)
    cursor = next
    found.push(...keys.map((k) => k.slice(prefix.length)))
  } while (cursor !== '0')
  return found
}

t.test('startStorageConnection › valid › answers our authorization page with a single-use ticket kept at most 5 minutes; nothing at the provider yet', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, { ...env, PUBLIC_URL: 'https://api.fractal.test' })
  const user = await given(app).signedIn()

  const before = Date.now()
  const res = await startConnection(app, user.headers, 'drive')

  t.equal(res.statusCode, 201)
  t.equal(res.headers['cache-control'], 'private, no-store')
  t.notOk(res.headers['set-cookie'], 'no cookie: the browser that opens the page is the one bound')
  const { authorizationUrl, expiresAt } = res.json()
  const url = new URL(authorizationUrl)
  t.equal(`${url.origin}${url.pathname}`, 'https://api.fractal.test/v1/storage/authorize', 'our page, not the provider')
  t.same([...url.searchParams.keys()], ['ticket'])
  const ticket = url.searchParams.get('ticket')!
  t.match(ticket, /^[A-Za-z0-9_-]{43}$/, '256 random bits')
  const expires = Date.parse(expiresAt)
  t.ok(expires >= before + 299_000 && expires <= Date.now() + 300_000, 'valid for 5 minutes')

  // The ticket is kept server-side, bound to the user and provider; no state exists before the page is opened.
  t.same(await stateKeys(app), [`storage-ticket:${ticket}`])
  const ttl = await app.redis.ttl(`storage-ticket:${ticket}`)
  t.ok(ttl > 290 && ttl <= 300, `TTL ${ttl} s is at most 300 s`)
  t.match(JSON.parse((await app.redis.get(`storage-ticket:${ticket}`))!), { userId: user.account.id, provider: 'drive', until: expires })
  t.equal(drive.tokenRequests.length, 0)
})

t.test('startStorageConnection › valid › each start has its own ticket; without PUBLIC_URL the page is on this server', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()

  const urls = [
    new URL((await startConnection(app, user.headers, 'drive')).json().authorizationUrl),
    new URL((await startConnection(app, user.headers, 'drive')).json().authorizationUrl),
    new URL((await startConnection(app, user.headers, 'box')).json().authorizationUrl)
  ]

  t.equal(new Set(urls.map((u) => u.searchParams.get('ticket'))).size, 3, 'three tickets')
  for (const url of urls) t.equal(`${url.origin}${url.pathname}`, `http://${app.config.host}:${app.config.port}/v1/storage/authorize`)
  t.equal((await stateKeys(app)).length, 3, 'three tickets kept')
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

  t.same(await stateKeys(app), [], 'nothing was kept')
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
  t.same(await stateKeys(app), [], 'nothing was kept')
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
  t.same(await stateKeys(app), [], 'nothing was kept')
})
