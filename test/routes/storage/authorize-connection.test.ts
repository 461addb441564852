import { createHash } from 'node:crypto'
import t from 'tap'
import { storageDepsOf } from '../../../routes/storage/feature.js'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import {
  authorize, authorizeIn, Browser, callback, clientRedirect, openPage, startConnection, startProvider, startProviders, stoppedClock, storageEnv
} from '../../helpers/storage-oauth.js'

type App = Awaited<ReturnType<typeof build>>

const sha256 = (value: string) => createHash('sha256').update(value).digest('base64url')

/** A signed-in user's start: the URL of our page and its ticket. */
async function started (app: App, provider = 'drive') {
  const user = await given(app).signedIn()
  const res = await startConnection(app, user.headers, provider)
  const startUrl = res.json().authorizationUrl as string
  return { user, startUrl, ticket: new URL(startUrl).searchParams.get('ticket')! }
}

/** This app's tickets and states in Redis, without the key prefix. */
async function storageKeys (app: App): Promise<string[]> {
  const prefix = app.config.redis.prefix
  return (await app.redis.keys(`${prefix}storage-*`)).map((k) => k.slice(prefix.length)).sort()
}

const pagePath = (startUrl: string) => { const u = new URL(startUrl); return `${u.pathname}${u.search}` }

t.test('authorizeStorageConnection › valid › names the provider and the Fractal account, sets the browser nonce, links to the provider with PKCE and a state bound to that nonce', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { user, startUrl, ticket } = await started(app)
  const browser = new Browser()

  const page = await openPage(app, browser, startUrl)

  t.equal(page.res.statusCode, 200)
  t.match(page.res.headers['content-type'], /^text\/html; charset=utf-8/)
  t.equal(page.res.headers['cache-control'], 'no-store')
  t.match(page.res.headers['content-security-policy'], /default-src 'none'.*frame-ancestors 'none'/, 'no script, nothing loaded, never framed (no clickjacking of Continue)')
  t.equal(page.res.headers['x-frame-options'], 'DENY')
  t.equal(page.accountEmail, user.account.email, 'the Fractal account the connection will belong to')
  t.match(page.res.body, /Connect Provider drive to Fractal/)

  // The cookie: HttpOnly, SameSite=Lax (sent on the provider's top-level redirect back), path-scoped, 10 minutes.
  const cookies = page.res.cookies as Array<Record<string, unknown>>
  t.equal(cookies.length, 1)
  t.match(cookies[0], { name: 'fractal_storage', path: '/v1/storage', httpOnly: true, sameSite: 'Lax', maxAge: 600 })
  t.notOk(cookies[0]!.secure, 'plain http (no PUBLIC_URL): not Secure')
  const nonce = String(cookies[0]!.value)
  t.match(nonce, /^[A-Za-z0-9_-]{43}$/)
  t.notOk(page.res.body.includes(nonce), 'the nonce is in the cookie only')

  // Continue: the provider's URL with PKCE S256 and a state.
  const url = new URL(page.continueUrl!)
  t.equal(`${url.origin}${url.pathname}`, drive.entry.authorizeUrl)
  const q = Object.fromEntries(url.searchParams)
  t.match(q, {
    response_type: 'code',
    client_id: drive.clientId,
    redirect_uri: (await storageDepsOf(app)).callbackUrl,
    scope: drive.entry.scopes.join(' '),
    state: /^[A-Za-z0-9_-]{43}$/,
    code_challenge: /^[A-Za-z0-9_-]{43}$/,
    code_challenge_method: 'S256',
    access_type: 'offline',
    prompt: 'consent'
  })
  t.notOk(url.searchParams.has('client_secret'), 'the secret stays with us')
  t.notOk(url.searchParams.has('code_verifier'), 'the verifier stays with us')
  t.notOk(q.state === ticket, 'the state is not the ticket')

  // The ticket is gone; the state is kept for 10 minutes, bound to the user, provider and the nonce's hash.
  t.same(await storageKeys(app), [`storage-state:${q.state}`])
  const ttl = await app.redis.ttl(`storage-state:${q.state}`)
  t.ok(ttl > 590 && ttl <= 600, `TTL ${ttl} s is at most 600 s`)
  const saved = JSON.parse((await app.redis.get(`storage-state:${q.state}`))!) as Record<string, string>
  t.match(saved, { userId: user.account.id, provider: 'drive', verifier: /^[A-Za-z0-9_-]{43,128}$/, browser: sha256(nonce) })
  t.notOk(JSON.stringify(saved).includes(nonce), 'only the nonce\'s hash is kept')
  t.equal(sha256(saved.verifier!), q.code_challenge, 'the challenge is S256 of the stored verifier')
  t.notOk(page.res.body.includes(saved.verifier!), 'the verifier is not in the page')

  // Cancel: the callback with access_denied, from this browser, ends the flow.
  t.same(Object.fromEntries(new URL(page.cancelUrl!).searchParams), { state: q.state, error: 'access_denied' })
  const cancelled = await callback(app, Object.fromEntries(new URL(page.cancelUrl!).searchParams), browser)
  t.same(cancelled.outcome, { provider: 'drive', status: 'error', reason: 'access_denied' })
  t.same(await storageKeys(app), [], 'the state is used up')
  t.equal(browser.jar.size, 0, 'the cookie is cleared')
  t.equal(drive.tokenRequests.length, 0)
})

t.test('authorizeStorageConnection › valid › over HTTPS (PUBLIC_URL) the nonce is a __Host- cookie: Secure, Path=/, no Domain', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, { ...env, PUBLIC_URL: 'https://api.fractal.test' })
  const { startUrl } = await started(app)

  const res = await app.inject({ method: 'GET', url: pagePath(startUrl) })

  t.equal(res.statusCode, 200)
  const cookie = String(res.headers['set-cookie'])
  t.match(cookie, /^__Host-fractal_storage=[A-Za-z0-9_-]{43}; /)
  for (const attribute of ['Max-Age=600', 'Path=/', 'HttpOnly', 'Secure', 'SameSite=Lax']) t.ok(cookie.split('; ').includes(attribute), attribute)
  t.notMatch(cookie, /Domain=/i, 'host-only')
  t.match(new URL(/id="continue" href="([^"]*)"/.exec(res.body)![1]!.replace(/&amp;/g, '&')).searchParams.get('redirect_uri'), 'https://api.fractal.test/v1/storage/callback')
})

t.test('authorizeStorageConnection › valid › each provider its own server, client and extra parameters; each page its own state, verifier and nonce', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const open = async () => {
    const browser = new Browser()
    const page = await openPage(app, browser, (await startConnection(app, user.headers, 'drive')).json().authorizationUrl)
    return { url: new URL(page.continueUrl!), nonce: browser.jar.get('fractal_storage')!.value }
  }

  const one = await open()
  const two = await open()
  const other = new URL((await openPage(app, new Browser(), (await startConnection(app, user.headers, 'box')).json().authorizationUrl)).continueUrl!)

  t.not(one.url.searchParams.get('state'), two.url.searchParams.get('state'))
  t.not(one.url.searchParams.get('code_challenge'), two.url.searchParams.get('code_challenge'))
  t.not(one.nonce, two.nonce)
  t.equal(other.origin, new URL(box.issuer).origin, 'the box server, not the drive one')
  t.not(other.origin, new URL(drive.issuer).origin)
  t.equal(other.searchParams.get('client_id'), box.clientId)
  t.equal(other.searchParams.get('token_access_type'), 'offline')
  t.notOk(other.searchParams.has('access_type'), 'no other provider\'s parameters')
  t.equal(other.searchParams.get('redirect_uri'), `http://${app.config.host}:${app.config.port}/v1/storage/callback`, 'without PUBLIC_URL: this server')
})

t.test('authorizeStorageConnection › valid › a second page in the same browser replaces the nonce: the first flow ends in browser_mismatch, the second connects', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const browser = new Browser()

  const first = await authorizeIn(app, user.headers, drive, browser)
  const second = await authorizeIn(app, user.headers, box, browser)

  t.same((await callback(app, { state: first.state, code: first.code }, browser)).outcome, { provider: 'drive', status: 'error', reason: 'browser_mismatch' })
  t.same((await callback(app, { state: second.state, code: second.code }, browser)).outcome, { provider: 'box', status: 'connected' })
  t.same(await app.db.selectFrom('storage_connection').select('provider').execute(), [{ provider: 'box' }])
})

t.test('authorizeStorageConnection › valid › what the page shows is escaped', async (t) => {
  const provider = await startProvider(t, 'drive', { name: 'Drive <img src=x onerror=alert(1)> & "co"' })
  const app = await build(t, storageEnv([provider]))
  const { startUrl } = await started(app)

  const page = await openPage(app, new Browser(), startUrl)

  t.notOk(page.res.body.includes('<img'), 'no markup from the provider name')
  t.match(page.res.body, /Drive &lt;img src=x onerror=alert\(1\)&gt; &amp; &quot;co&quot;/)
})

t.test('authorizeStorageConnection › insufficient permissions › no token is needed, and another user\'s token does not change whose account the flow connects', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const { user, startUrl } = await started(app)
  const other = await given(app).signedIn()
  const browser = new Browser()

  const res = await browser.get(app, pagePath(startUrl), other.headers)

  t.equal(res.statusCode, 200)
  t.ok(res.body.includes(user.account.email), 'the starter\'s account is named')
  t.notOk(res.body.includes(other.account.email), 'not the caller\'s')
  const continueUrl = /id="continue" href="([^"]*)"/.exec(res.body)![1]!.replace(/&amp;/g, '&')
  const { code, state } = await authorize(continueUrl)
  t.equal((await callback(app, { state, code }, browser)).outcome!.status, 'connected')
  t.equal(drive.tokenRequests.length, 1)
  const owners = await app.db.selectFrom('storage_connection').select('user_id').execute()
  t.same(owners, [{ user_id: user.account.id }], 'the starter\'s connection')
})

t.test('authorizeStorageConnection › insufficient permissions › the link works once: a second browser (or a second visit) gets invalid_ticket and no cookie', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const { startUrl } = await started(app)
  const first = new Browser()
  const second = new Browser()

  t.equal((await openPage(app, first, startUrl)).res.statusCode, 200)
  for (const browser of [second, first]) {
    const page = await openPage(app, browser, startUrl)
    t.equal(page.res.statusCode, 302)
    t.same(page.outcome, { status: 'error', reason: 'invalid_ticket' })
  }
  t.equal(second.jar.size, 0, 'the second browser holds no nonce')
  t.equal((await storageKeys(app)).length, 1, 'one state, the first browser\'s')
})

t.test('authorizeStorageConnection › insufficient permissions › the same ticket opened many times at once: exactly one page, one state', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const { startUrl } = await started(app)

  const pages = await Promise.all(Array.from({ length: 8 }, () => openPage(app, new Browser(), startUrl)))

  t.equal(pages.filter((p) => p.res.statusCode === 200).length, 1, 'one page')
  t.same(pages.filter((p) => p.res.statusCode === 302).map((p) => p.outcome!.reason), Array(7).fill('invalid_ticket'))
  t.equal(pages.filter((p) => p.res.headers['set-cookie']).length, 1, 'one cookie')
  t.equal((await storageKeys(app)).length, 1, 'one state')
})

t.test('authorizeStorageConnection › invalid input › a missing, malformed or oversized ticket is 400 naming it; no cookie, nothing taken', async (t) => {
  const { env } = await startProviders(t)
  const app = await build(t, env)
  const { ticket } = await started(app)

  for (const query of ['', '?ticket=', `?ticket=${'a'.repeat(129)}`, '?ticket=a%20b', '?ticket=%3Cscript%3E']) {
    const res = await app.inject({ method: 'GET', url: `/v1/storage/authorize${query}` })
    t.equal(res.statusCode, 400, query)
    t.match(res.headers['content-type'], /^application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed')
    t.ok(res.json().errors.some((e: { field: string }) => e.field === '/query/ticket'), 'names /query/ticket')
    t.notOk(res.headers['set-cookie'])
  }
  t.same(await storageKeys(app), [`storage-ticket:${ticket}`], 'the real ticket is untouched')
})

t.test('authorizeStorageConnection › non-existing › an unknown, used or expired ticket: back to the app with invalid_ticket, no cookie, no state', async (t) => {
  const { env } = await startProviders(t)
  const clock = stoppedClock()
  const app = await build(t, env, { clock })

  const unknown = await openPage(app, new Browser(), `${(await storageDepsOf(app)).authorizeUrl}?ticket=${'A'.repeat(43)}`)
  t.equal(unknown.res.statusCode, 302)
  t.equal(`${unknown.res.headers.location}`.split('?')[0], clientRedirect)
  t.same(unknown.outcome, { status: 'error', reason: 'invalid_ticket' })
  t.equal(unknown.res.headers['cache-control'], 'no-store')

  // Expired: the clock moves past the ticket's 5 minutes (Redis would keep it a while longer).
  const late = await started(app)
  clock.advance(300_000)
  const expired = await openPage(app, new Browser(), late.startUrl)
  t.same(expired.outcome, { status: 'error', reason: 'invalid_ticket' })
  t.notOk(expired.res.headers['set-cookie'])

  // A millisecond before, it still opens.
  const timely = await started(app)
  clock.advance(299_999)
  t.equal((await openPage(app, new Browser(), timely.startUrl)).res.statusCode, 200)

  t.same((await storageKeys(app)).filter((k) => k.startsWith('storage-ticket:')), [], 'every ticket is gone')
  t.equal((await storageKeys(app)).length, 1, 'one state: the timely page\'s')
})

t.test('authorizeStorageConnection › non-existing › the provider was removed, or the account deleted or disabled, since the start: back to the app with that reason, no state', async (t) => {
  const { drive, box, env } = await startProviders(t)
  const before = await build(t, env)
  const gone = await started(before, 'box')
  const deleted = await started(before)
  const disabled = await started(before)
  await before.db.deleteFrom('account').where('id', '=', deleted.user.account.id).execute()
  await before.db.updateTable('account').set({ disabled_at: new Date() }).where('id', '=', disabled.user.account.id).execute()
  // The next deployment offers drive only; same database, same Redis.
  const app = await build(t, { ...storageEnv([drive]), DATABASE_URL: before.config.db.url!, REDIS_PREFIX: before.config.redis.prefix })

  t.same((await openPage(app, new Browser(), gone.startUrl)).outcome, { provider: 'box', status: 'error', reason: 'unknown_provider' })
  t.same((await openPage(app, new Browser(), deleted.startUrl)).outcome, { provider: 'drive', status: 'error', reason: 'account_gone' })
  t.same((await openPage(app, new Browser(), disabled.startUrl)).outcome, { provider: 'drive', status: 'error', reason: 'account_gone' })
  t.same(await storageKeys(app), [], 'no state')
  t.equal(box.tokenRequests.length + drive.tokenRequests.length, 0)
  // The reasons the operation's description lists, read from the published spec.
  const description: string = app.openapi.document.paths['/v1/storage/authorize'].get.description
  for (const reason of ['invalid_ticket', 'unknown_provider', 'account_gone']) t.ok(description.includes(`\`${reason}\``), `reason ${reason} is one the spec lists`)
})
