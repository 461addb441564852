// Cloud-storage providers for the storage tests: each one a real OAuth 2 server (oauth2-mock-server) on a free
// local port, recording what our API sends to its token, userinfo and revoke endpoints.
import { randomBytes, randomUUID } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { createServer as createNetServer } from 'node:net'
import type { FastifyInstance } from 'fastify'
import { OAuth2Server, type MutableResponse } from 'oauth2-mock-server'
import type { Overrides } from './build.js'

type Test = { teardown (fn: () => unknown): void }

/** Where the callback sends the user afterwards (STORAGE_CLIENT_REDIRECT). */
export const clientRedirect = 'https://app.fractal.test/storage'

/** A 32-byte AES key in the STORAGE_TOKEN_KEYS format (`id:base64`). */
export function tokenKey (id: string): string {
  return `${id}:${randomBytes(32).toString('base64')}`
}

export interface ProviderEntry {
  code: string
  name: string
  iconUrl: string
  termsUrl: string
  authorizeUrl: string
  tokenUrl: string
  revokeUrl?: string
  revocation?: 'oauth2' | 'dropbox'
  userInfoUrl?: string
  emailField?: string
  scopes: string[]
  authorizeParams?: Record<string, string>
  clientId?: string
  clientSecret?: string
}

export interface FakeProvider {
  code: string
  server: OAuth2Server
  issuer: string
  clientId: string
  clientSecret: string
  /** The STORAGE_PROVIDERS entry pointing at this server. */
  entry: ProviderEntry
  /** Form bodies the token endpoint answered, in order. */
  tokenRequests: Array<Record<string, string>>
  /** The token endpoint's answers, in order (read `.body` after the call: hooks may still change it). */
  tokenAnswers: MutableResponse[]
  /** Calls of the userinfo endpoint. */
  userinfoCalls: Array<{ authorization: string | undefined }>
  /** Calls of the revoke endpoint, each added once its form body has arrived. */
  revocations: Array<{ authorization: string | undefined, body: Record<string, string> }>
  /** What userinfo answers as the account's address (`null`: no address). */
  email: string | null
  /** The next token answer is this status and body instead. */
  answerTokenOnce (statusCode: number, body: Record<string, unknown>): void
  /** The next token answer carries no refresh token (as providers do on a repeated consent). */
  omitRefreshTokenOnce (): void
  /** The next revocation answers this status. */
  answerRevokeOnce (statusCode: number): void
}

const suffix = () => randomBytes(4).toString('hex')

let providerKey: ReturnType<OAuth2Server['issuer']['keys']['generate']> | undefined

export async function startProvider (t: Test, code: string, fields: Partial<ProviderEntry> = {}): Promise<FakeProvider> {
  const server = new OAuth2Server()
  // One RSA key per process for the providers (generating one costs ~110 ms of CPU); none of these tests
  // verifies a provider's signature.
  if (providerKey) await server.issuer.keys.add(await providerKey)
  else providerKey = server.issuer.keys.generate('RS256')
  await providerKey
  await server.start(0, '127.0.0.1')
  t.teardown(() => server.stop())
  const issuer = server.issuer.url!
  const service = server.service

  const clientId = `${code}-client-${suffix()}`
  const clientSecret = `${code}-secret-${suffix()}`
  const provider: FakeProvider = {
    code,
    server,
    issuer,
    clientId,
    clientSecret,
    entry: {
      code,
      name: `Provider ${code}`,
      iconUrl: `https://cdn.fractal.test/icons/${code}.svg`,
      termsUrl: `https://${code}.example.test/terms`,
      authorizeUrl: `${issuer}/authorize`,
      tokenUrl: `${issuer}/token`,
      revokeUrl: `${issuer}/revoke`,
      userInfoUrl: `${issuer}/userinfo`,
      emailField: 'email',
      scopes: ['openid', 'email', `${code}.files`],
      clientId,
      clientSecret,
      ...fields
    },
    tokenRequests: [],
    tokenAnswers: [],
    userinfoCalls: [],
    revocations: [],
    email: `someone-${suffix()}@${code}.example.test`,
    answerTokenOnce (statusCode, body) {
      service.once('beforeResponse', (response) => {
        response.statusCode = statusCode
        response.body = body
      })
    },
    omitRefreshTokenOnce () {
      service.once('beforeResponse', (response) => {
        if (response.body !== '') delete response.body.refresh_token
      })
    },
    answerRevokeOnce (statusCode) {
      service.once('beforeRevoke', (response) => { response.statusCode = statusCode })
    }
  }

  // Every token unique (the mock's JWTs are otherwise equal within a second).
  service.on('beforeTokenSigning', (token) => { token.payload.jti = randomUUID() })
  service.on('beforeResponse', (response, req) => {
    provider.tokenRequests.push({ ...req.body } as Record<string, string>)
    provider.tokenAnswers.push(response)
  })
  service.on('beforeUserinfo', (response, req) => {
    provider.userinfoCalls.push({ authorization: req.headers.authorization })
    response.body = provider.email === null ? { sub: 'johndoe' } : { sub: 'johndoe', email: provider.email }
  })
  // The mock does not read the revocation's form body: we do (before Node would discard it).
  service.on('beforeRevoke', (_response, req) => {
    const chunks: Buffer[] = []
    req.on('data', (chunk: Buffer) => chunks.push(chunk))
    req.on('end', () => {
      provider.revocations.push({ authorization: req.headers.authorization, body: Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString())) })
    })
  })
  return provider
}

/** The STORAGE_* variables offering these providers (and any extra entries), redirecting to `clientRedirect`. */
export function storageEnv (providers: Array<FakeProvider | ProviderEntry>, overrides: Overrides = {}): Overrides {
  return {
    STORAGE_PROVIDERS: JSON.stringify({ providers: providers.map((p) => 'entry' in p ? p.entry : p) }),
    STORAGE_CLIENT_REDIRECT: clientRedirect,
    STORAGE_TOKEN_KEYS: tokenKey('k1'),
    STORAGE_HTTP_TIMEOUT_MS: '2000',
    ...overrides
  }
}

/** Two providers (`drive`, `box`) on two servers, and the env that offers them. */
export async function startProviders (t: Test, overrides: Overrides = {}) {
  const drive = await startProvider(t, 'drive', { authorizeParams: { access_type: 'offline', prompt: 'consent' } })
  const box = await startProvider(t, 'box', { authorizeParams: { token_access_type: 'offline' } })
  return { drive, box, env: storageEnv([drive, box], overrides) }
}

/** A local HTTP server that accepts requests and never answers them. */
export async function silentServer (t: Test): Promise<{ url: string, server: Server, requests: number }> {
  const out = { url: '', server: createServer(() => { out.requests++ }), requests: 0 }
  await new Promise<void>((resolve) => out.server.listen(0, '127.0.0.1', resolve))
  out.url = `http://127.0.0.1:${(out.server.address() as { port: number }).port}`
  t.teardown(() => new Promise<void>((resolve) => {
    out.server.closeAllConnections()
    out.server.close(() => resolve())
  }))
  return out
}

/** A port nothing listens on. */
export async function closedPort (): Promise<number> {
  const server = createNetServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** POST /v1/storage/connections. */
export function startConnection (app: FastifyInstance, headers: Record<string, string>, provider: string) {
  return app.inject({ method: 'POST', url: '/v1/storage/connections', payload: { provider }, headers })
}

/**
 * A browser's cookies for the API (RFC 6265 as far as these tests need it: name, value, path prefix, Max-Age
 * and Expires, a Max-Age of 0 removes). Each browser in a test is its own jar; `inject` is what it sends.
 */
export class Browser {
  readonly jar = new Map<string, { value: string, path: string, until: number | null }>()

  /** The Cookie header for a request to `path`, or undefined when no cookie applies. */
  cookieHeader (path: string): string | undefined {
    const now = Date.now()
    const sent = [...this.jar].filter(([, c]) => (c.until === null || c.until > now) && (path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`)))
    return sent.length > 0 ? sent.map(([name, c]) => `${name}=${c.value}`).join('; ') : undefined
  }

  /** Keeps what an answer's Set-Cookie headers say. */
  receive (res: { cookies: Array<{ name: string, value: string, path?: string, maxAge?: number, expires?: Date }> }) {
    for (const c of res.cookies) {
      const until = c.maxAge !== undefined ? Date.now() + c.maxAge * 1000 : c.expires ? c.expires.getTime() : null
      if (until !== null && until <= Date.now()) this.jar.delete(c.name)
      else this.jar.set(c.name, { value: c.value, path: c.path ?? '/', until })
    }
  }

  /** GET `url` (a path with its query) on the app, sending and keeping cookies. */
  async get (app: FastifyInstance, url: string, headers: Record<string, string> = {}) {
    const cookie = this.cookieHeader(url.split('?')[0]!)
    const res = await app.inject({ method: 'GET', url, headers: { ...headers, ...(cookie ? { cookie } : {}) } })
    this.receive(res)
    return res
  }
}

const unescapeHtml = (text: string) => text.replace(/&quot;/g, '"').replace(/&#39;/g, '\'').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&')

/** Opens our authorization page (the URL startStorageConnection answered) in `browser`: what it offers. */
export async function openPage (app: FastifyInstance, browser: Browser, authorizationUrl: string) {
  const url = new URL(authorizationUrl)
  const res = await browser.get(app, `${url.pathname}${url.search}`)
  const link = (id: string) => {
    const found = new RegExp(`id="${id}" href="([^"]*)"`).exec(res.body)?.[1]
    return found === undefined ? null : unescapeHtml(found)
  }
  const account = /<strong id="account">([^<]*)<\/strong>/.exec(res.body)?.[1]
  const location = res.headers.location ? new URL(String(res.headers.location)) : null
  return {
    res,
    continueUrl: link('continue'),
    cancelUrl: link('cancel'),
    accountEmail: account === undefined ? null : unescapeHtml(account),
    outcome: location ? Object.fromEntries(location.searchParams) : null
  }
}

/**
 * Where a browser following `authorizationUrl` is sent to sign in at the provider: through our authorization
 * page (its Continue link) when the URL is ours, the URL itself when it is already the provider's.
 */
export async function providerUrlFor (app: FastifyInstance, browser: Browser, authorizationUrl: string): Promise<string> {
  if (new URL(authorizationUrl).pathname !== '/v1/storage/authorize') return authorizationUrl
  const page = await openPage(app, browser, authorizationUrl)
  if (!page.continueUrl) throw new Error(`the authorization page offered no Continue (${page.res.statusCode} ${String(page.res.headers.location ?? '')})`)
  return page.continueUrl
}

/** The browser part at the provider: its authorize step, answering the code and state it redirects back with. */
export async function authorize (authorizationUrl: string): Promise<{ code: string, state: string }> {
  const res = await fetch(authorizationUrl, { redirect: 'manual' })
  const location = new URL(res.headers.get('location') ?? 'about:blank')
  const code = location.searchParams.get('code')
  const state = location.searchParams.get('state')
  if (!code || !state) throw new Error(`the mock provider gave no code (${res.status})`)
  return { code, state }
}

/**
 * GET /v1/storage/callback with these query parameters, from `browser` (its cookies sent and kept; a
 * browser with no cookies when none is given); `location` is the parsed redirect.
 */
export async function callback (app: FastifyInstance, query: Record<string, string>, browser: Browser = new Browser()) {
  const res = await browser.get(app, `/v1/storage/callback?${new URLSearchParams(query).toString()}`)
  const location = res.headers.location ? new URL(String(res.headers.location)) : null
  return { res, location, outcome: location ? Object.fromEntries(location.searchParams) : null }
}

/** A user's start in one browser, through our page to the provider's code: what the callback will need. */
export async function authorizeIn (app: FastifyInstance, headers: Record<string, string>, provider: FakeProvider, browser = new Browser()) {
  const started = await startConnection(app, headers, provider.code)
  if (started.statusCode !== 201) throw new Error(`startStorageConnection answered ${started.statusCode}: ${started.body}`)
  const startUrl = started.json().authorizationUrl as string
  const authorizationUrl = await providerUrlFor(app, browser, startUrl)
  return { browser, startUrl, authorizationUrl, ...await authorize(authorizationUrl) }
}

/** The whole flow for a signed-in user in one browser: start, our page, authorize at the provider, callback. */
export async function connect (app: FastifyInstance, headers: Record<string, string>, provider: FakeProvider, browser = new Browser()) {
  const flow = await authorizeIn(app, headers, provider, browser)
  // The browser's nonce, before the callback clears it.
  const nonce = [...browser.jar.values()][0]?.value
  const answers = provider.tokenAnswers.length
  const back = await callback(app, { state: flow.state, code: flow.code }, browser)
  const answer = provider.tokenAnswers[answers]
  const body = answer && answer.body !== '' ? answer.body : {}
  return {
    ...back,
    ...flow,
    nonce,
    accessToken: body.access_token as string | undefined,
    refreshToken: body.refresh_token as string | undefined,
    tokenRequest: provider.tokenRequests[answers]
  }
}

/**
 * The app's clock (`build(t, env, { clock })`), stopped at the real time of this call; `advance` moves it on.
 * The storage flows' tickets and states are checked against it. Redis keeps its own TTLs in real time.
 */
export function stoppedClock () {
  let now = Date.now()
  return { now: () => now, advance (ms: number) { now += ms } }
}

/** The user's stored connection row, or undefined. */
export function connectionRow (app: FastifyInstance, userId: string, provider: string) {
  return app.db.selectFrom('storage_connection').selectAll().where('user_id', '=', userId).where('provider', '=', provider).executeTakeFirst()
}
