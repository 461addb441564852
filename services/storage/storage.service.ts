import { randomBytes, timingSafeEqual } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import { defineError } from '../errors.js'
import { hashToId, newSecret } from '../hashing.js'
import type { TokenCipher } from './storage.crypto.js'
import { revokeGrant, revocationStyles, type GrantTokens, type RevocationStyle } from './storage.revocation.js'

export const UnknownProvider = defineError('not_found', 'Provider not found', (code: string) => `There is no storage provider ${code}.`)
export const ConnectionNotFound = defineError('not_found', 'Not connected', (code: string) => `You have no ${code} connection.`)
export const ProviderUnavailable = defineError('unavailable', 'Provider unavailable', (code: string, why: string) => `${code} did not answer as expected (${why}). Try again shortly.`,
  () => ({ retryAfter: 30 }))

export interface StorageProvider {
  code: string
  name: string
  iconUrl: string
  termsUrl: string
  authorizeUrl: string
  tokenUrl: string
  revokeUrl?: string
  /** How `revokeUrl` is called (storage.revocation.ts); `oauth2` (RFC 7009) unless said. */
  revocation?: RevocationStyle
  userInfoUrl?: string
  userInfoMethod?: 'GET' | 'POST'
  emailField?: string
  scopes: string[]
  authorizeParams?: Record<string, string>
  clientId: string
  clientSecret: string | null
}

export const providersFile = new URL('../../db/storage-providers.json', import.meta.url)

/**
 * The providers: STORAGE_PROVIDERS (JSON, each with its own clientId/clientSecret) or db/storage-providers.json
 * with the built-in clients from config. A provider without a client id is not offered.
 */
export async function loadProviders (json: string | null, clients: Record<string, { clientId: string | null, clientSecret: string | null }>): Promise<StorageProvider[]> {
  const raw = JSON.parse(json ?? await readFile(providersFile, 'utf8')) as { providers: Array<Omit<StorageProvider, 'clientId' | 'clientSecret'> & { clientId?: string, clientSecret?: string }> }
  return raw.providers.flatMap((p) => {
    if (p.revocation !== undefined && !revocationStyles.includes(p.revocation)) throw new Error(`storage: provider ${p.code} has an unknown revocation "${String(p.revocation)}" (one of ${revocationStyles.join(', ')})`)
    const clientId = p.clientId ?? clients[p.code]?.clientId
    if (!clientId) return []
    return [{ ...p, clientId, clientSecret: p.clientSecret ?? clients[p.code]?.clientSecret ?? null }]
  })
}

/** Flow records (tickets, states): single-use, expiring, kept server-side (Redis, or this process when embedded). */
export interface StateStore {
  put (key: string, value: string, ttlSeconds: number): Promise<void>
  /** The value, removed (GETDEL): a second use finds nothing. */
  take (key: string): Promise<string | null>
}

export interface StorageDeps {
  providers: StorageProvider[]
  cipher: TokenCipher
  states: StateStore
  /** Our authorization page (`GET /v1/storage/authorize`): what a connection's start answers. */
  authorizeUrl: string
  /** Where the provider sends the user back (this API's callback). */
  callbackUrl: string
  /** Where the callback sends the user afterwards (the app; a deep link for the desktop client). */
  clientRedirect: string
  timeoutMs: number
  /** The clock the tickets' and states' lifetimes are read against (tests move it). */
  now: () => number
  log: { warn (obj: object, msg: string): void }
}

/** From a connection's start until its authorization page is opened. */
export const ticketTtlSeconds = 300
/** From the authorization page until the provider sends the browser back: the state and the browser's cookie. */
export const flowTtlSeconds = 600

/**
 * The cookie that binds a flow to the browser that opened its authorization page. Over HTTPS it is a
 * `__Host-` cookie (Secure, Path=/, no Domain), which a sibling subdomain cannot plant; plain-http
 * development gets the same cookie without the prefix and Secure, scoped to the storage paths.
 */
export function browserCookie (deps: Pick<StorageDeps, 'callbackUrl'>) {
  const secure = deps.callbackUrl.startsWith('https:')
  return secure
    ? { name: '__Host-fractal_storage', path: '/', secure, maxAge: flowTtlSeconds }
    : { name: 'fractal_storage', path: '/v1/storage', secure, maxAge: flowTtlSeconds }
}

/** A ticket's or state's record, removed whatever it holds; null when unknown, used or past its `until`. */
async function takeRecord<T extends { until: number }> (deps: StorageDeps, key: string): Promise<T | null> {
  const saved = await deps.states.take(key)
  if (!saved) return null
  const record = JSON.parse(saved) as T
  return record.until > deps.now() ? record : null
}

function providerOf (deps: StorageDeps, code: string) {
  const provider = deps.providers.find((p) => p.code === code)
  if (!provider) throw new UnknownProvider(code)
  return provider
}

function clientUrl (deps: StorageDeps, params: Record<string, string>) {
  const url = new URL(deps.clientRedirect)
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
  return url.toString()
}

interface Ticket { userId: string, provider: string, until: number }
interface State { userId: string, provider: string, verifier: string, browser: string, until: number }

/**
 * A connection begins: a single-use ticket for the user and provider, and our authorization page's URL
 * carrying it. Nothing goes to the provider yet: the flow is bound to a browser when the page is opened.
 */
export async function startConnection (deps: StorageDeps, userId: string, code: string) {
  providerOf(deps, code)
  const ticket = newSecret()
  const until = deps.now() + ticketTtlSeconds * 1000
  await deps.states.put(`ticket:${ticket}`, JSON.stringify({ userId, provider: code, until } satisfies Ticket), ticketTtlSeconds)
  const url = new URL(deps.authorizeUrl)
  url.searchParams.set('ticket', ticket)
  return { authorizationUrl: url.toString(), expiresAt: new Date(until).toISOString() }
}

export type Authorization =
  | { location: string }
  | { nonce: string, page: { provider: string, accountEmail: string, continueUrl: string, cancelUrl: string, expiresAt: Date } }

/**
 * The authorization page is opened: the ticket is taken (single use), a state with PKCE (S256) is bound to
 * the user and to a fresh browser nonce (only its hash is kept; the nonce goes in this browser's cookie),
 * and the page names the Fractal account being connected, with the provider's URL behind "Continue". A
 * browser other than this one cannot finish the flow; one that was sent this page by someone else sees
 * whose account it would connect. An unusable ticket sends the browser back to the app with the reason.
 */
export async function openAuthorization (db: Kysely<DB>, deps: StorageDeps, ticket: string): Promise<Authorization> {
  const saved = await takeRecord<Ticket>(deps, `ticket:${ticket}`)
  if (!saved) return { location: clientUrl(deps, { status: 'error', reason: 'invalid_ticket' }) }
  const { userId, provider: code } = saved
  const provider = deps.providers.find((p) => p.code === code)
  if (!provider) return { location: clientUrl(deps, { provider: code, status: 'error', reason: 'unknown_provider' }) }
  const account = await db.selectFrom('account').select('email').where('id', '=', userId)
    .where('deleted_at', 'is', null).where('disabled_at', 'is', null).executeTakeFirst()
  if (!account) return { location: clientUrl(deps, { provider: code, status: 'error', reason: 'account_gone' }) }

  const nonce = newSecret()
  const state = newSecret()
  const verifier = randomBytes(48).toString('base64url')
  const until = deps.now() + flowTtlSeconds * 1000
  const record: State = { userId, provider: code, verifier, browser: hashToId(nonce), until }
  await deps.states.put(`state:${state}`, JSON.stringify(record), flowTtlSeconds)
  const url = new URL(provider.authorizeUrl)
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: provider.clientId,
    redirect_uri: deps.callbackUrl,
    scope: provider.scopes.join(' '),
    state,
    code_challenge: hashToId(verifier), // PKCE S256
    code_challenge_method: 'S256',
    ...provider.authorizeParams
  }).toString()
  const cancel = new URL(deps.callbackUrl)
  cancel.search = new URLSearchParams({ state, error: 'access_denied' }).toString()
  return { nonce, page: { provider: provider.name, accountEmail: account.email, continueUrl: url.toString(), cancelUrl: cancel.toString(), expiresAt: new Date(until) } }
}

interface TokenAnswer { access_token?: string, refresh_token?: string, expires_in?: number, error?: string, error_description?: string }

async function tokenRequest (deps: StorageDeps, provider: StorageProvider, params: Record<string, string>): Promise<{ status: number, body: TokenAnswer }> {
  const body = new URLSearchParams({ ...params, client_id: provider.clientId, ...(provider.clientSecret ? { client_secret: provider.clientSecret } : {}) })
  let res: Response
  try {
    res = await fetch(provider.tokenUrl, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' }, body, signal: AbortSignal.timeout(deps.timeoutMs) })
  } catch (err) {
    throw new ProviderUnavailable(provider.code, (err as Error).name === 'TimeoutError' ? 'timed out' : 'unreachable')
  }
  const text = await res.text()
  let parsed: TokenAnswer = {}
  try { parsed = JSON.parse(text) as TokenAnswer } catch { /* not JSON: handled below */ }
  return { status: res.status, body: parsed }
}

async function accountEmail (deps: StorageDeps, provider: StorageProvider, accessToken: string): Promise<string | null> {
  if (!provider.userInfoUrl) return null
  try {
    const res = await fetch(provider.userInfoUrl, { method: provider.userInfoMethod ?? 'GET', headers: { authorization: `Bearer ${accessToken}` }, signal: AbortSignal.timeout(deps.timeoutMs) })
    if (!res.ok) return null
    const info = await res.json() as Record<string, unknown>
    const email = info[provider.emailField ?? 'email']
    return typeof email === 'string' ? email : null
  } catch {
    return null
  }
}

/**
 * The provider's redirect: the state is taken (single use) and must come with the cookie of the browser
 * that opened its authorization page; then the code is exchanged with the PKCE verifier and the tokens are
 * stored encrypted for the user who started (a refresh token the provider omits this time keeps the one
 * stored). Always answers where to send the user, with the outcome; never a token.
 */
export async function completeConnection (db: Kysely<DB>, deps: StorageDeps, query: { state?: string | undefined, code?: string | undefined, error?: string | undefined }, browserNonce: string | undefined): Promise<{ location: string, nonceUsed: boolean }> {
  const saved = query.state ? await takeRecord<State>(deps, `state:${query.state}`) : null
  // A state that is not this browser's flow leaves its cookie alone (it may belong to a flow still under way).
  if (!saved) return { location: clientUrl(deps, { status: 'error', reason: 'invalid_state' }), nonceUsed: false }
  // Another browser (the state was carried to it), or none: nothing of this flow is done or said there.
  if (!browserNonce || !timingSafeEqual(Buffer.from(hashToId(browserNonce)), Buffer.from(saved.browser))) {
    deps.log.warn({ provider: saved.provider, cookie: browserNonce ? 'another browser' : 'none' }, 'storage callback refused: not the browser that opened the authorization page')
    return { location: clientUrl(deps, { provider: saved.provider, status: 'error', reason: 'browser_mismatch' }), nonceUsed: false }
  }
  return { location: await finishConnection(db, deps, saved, query), nonceUsed: true }
}

/** The flow's browser is back: the provider's answer, the exchange, the tokens stored. */
async function finishConnection (db: Kysely<DB>, deps: StorageDeps, saved: State, query: { code?: string | undefined, error?: string | undefined }): Promise<string> {
  const back = (params: Record<string, string>) => clientUrl(deps, params)
  const { userId, provider: code, verifier } = saved
  if (query.error) return back({ provider: code, status: 'error', reason: query.error === 'access_denied' ? 'access_denied' : 'provider_error' })
  if (!query.code) return back({ provider: code, status: 'error', reason: 'missing_code' })
  const provider = deps.providers.find((p) => p.code === code)
  if (!provider) return back({ provider: code, status: 'error', reason: 'unknown_provider' })
  let answer: { status: number, body: TokenAnswer }
  try {
    answer = await tokenRequest(deps, provider, { grant_type: 'authorization_code', code: query.code, redirect_uri: deps.callbackUrl, code_verifier: verifier })
  } catch {
    return back({ provider: code, status: 'error', reason: 'provider_unavailable' })
  }
  if (answer.status !== 200 || !answer.body.access_token) {
    deps.log.warn({ provider: code, status: answer.status, error: answer.body.error }, 'storage code exchange refused')
    return back({ provider: code, status: 'error', reason: 'exchange_failed' })
  }
  const email = await accountEmail(deps, provider, answer.body.access_token)
  const access = deps.cipher.encrypt(answer.body.access_token)
  const refresh = answer.body.refresh_token ? deps.cipher.encrypt(answer.body.refresh_token) : null
  const expiresAt = answer.body.expires_in ? new Date(Date.now() + answer.body.expires_in * 1000) : null
  try {
    await storeTokens(db, deps, userId, code, { access, refresh, expiresAt, email })
  } catch (err) {
    // The account went away while its owner was at the provider: nothing to connect (the tokens are revoked).
    if ((err as { code?: string }).code !== '23503') throw err
    await revoke(deps, provider, { access: answer.body.access_token, refresh: answer.body.refresh_token ?? null }).catch(() => {})
    return back({ provider: code, status: 'error', reason: 'account_gone' })
  }
  return back({ provider: code, status: 'connected' })
}

async function storeTokens (db: Kysely<DB>, deps: StorageDeps, userId: string, code: string, t: { access: string, refresh: string | null, expiresAt: Date | null, email: string | null }) {
  const { access, refresh, expiresAt, email } = t
  await db.transaction().execute(async (trx) => {
    const existing = await trx.selectFrom('storage_connection').select(['refresh_token', 'key_id']).where('user_id', '=', userId).where('provider', '=', code).forUpdate().executeTakeFirst()
    // Keep the stored refresh token when none came back: re-encrypted under the current key.
    const keptRefresh = refresh ?? (existing?.refresh_token ? deps.cipher.encrypt(deps.cipher.decrypt(existing.key_id, existing.refresh_token)) : null)
    const values = { access_token: access, refresh_token: keptRefresh, key_id: deps.cipher.keyId, expires_at: expiresAt, account_email: email, status: 'connected' as const }
    await trx.insertInto('storage_connection').values({ user_id: userId, provider: code, ...values })
      .onConflict((oc) => oc.columns(['user_id', 'provider']).doUpdateSet({ ...values, updated_at: sql`now()` })).execute()
  })
}

export function listConnections (db: Kysely<DB>, userId: string) {
  return db.selectFrom('storage_connection').select(['provider', 'account_email', 'connected_at', 'status'])
    .where('user_id', '=', userId).orderBy('provider').execute()
}

/** Revokes at the provider (revoked already is fine), then forgets the connection; kept when the provider refuses. */
export async function deleteConnection (db: Kysely<DB>, deps: StorageDeps, userId: string, code: string) {
  const provider = providerOf(deps, code)
  const row = await db.selectFrom('storage_connection').selectAll().where('user_id', '=', userId).where('provider', '=', code).executeTakeFirst()
  if (!row) throw new ConnectionNotFound(code)
  await revoke(deps, provider, { access: deps.cipher.decrypt(row.key_id, row.access_token), refresh: row.refresh_token ? deps.cipher.decrypt(row.key_id, row.refresh_token) : null })
  await db.deleteFrom('storage_connection').where('user_id', '=', userId).where('provider', '=', code).execute()
}

/**
 * Revokes the grant at the provider, as the provider documents it (storage.revocation.ts): done when it
 * says revoked, or revoked already; anything else (a refusal, a 5xx, no answer) is `unavailable`.
 */
async function revoke (deps: StorageDeps, provider: StorageProvider, tokens: GrantTokens) {
  if (!provider.revokeUrl) return
  const revoked = await revokeGrant({ revokeUrl: provider.revokeUrl, revocation: provider.revocation }, tokens, {
    timeoutMs: deps.timeoutMs,
    async refresh (refreshToken) {
      const answer = await tokenRequest(deps, provider, { grant_type: 'refresh_token', refresh_token: refreshToken })
      if (answer.body.error === 'invalid_grant') return 'invalid_grant'
      if (answer.status !== 200 || !answer.body.access_token) throw new ProviderUnavailable(provider.code, `refresh before revocation answered ${answer.status}`)
      return { accessToken: answer.body.access_token }
    }
  })
  if (!revoked.ok) {
    deps.log.warn({ provider: provider.code, why: revoked.why }, 'storage revocation refused: the connection is kept')
    throw new ProviderUnavailable(provider.code, revoked.why)
  }
}

/**
 * Tokens a container can use now: refreshed first when they expire within five minutes. A refresh answered
 * `invalid_grant` marks the connection `needs_reauth` (the user sees it in the list) and yields nothing.
 */
export async function freshTokens (db: Kysely<DB>, deps: StorageDeps, userId: string) {
  const rows = await db.selectFrom('storage_connection').selectAll().where('user_id', '=', userId).where('status', '=', 'connected').execute()
  const out: Array<{ provider: string, accessToken: string }> = []
  for (const row of rows) {
    const provider = deps.providers.find((p) => p.code === row.provider)
    if (!provider) continue
    let access = deps.cipher.decrypt(row.key_id, row.access_token)
    if (row.expires_at && row.expires_at.getTime() - Date.now() < 5 * 60_000 && row.refresh_token) {
      const refreshToken = deps.cipher.decrypt(row.key_id, row.refresh_token)
      const answer = await tokenRequest(deps, provider, { grant_type: 'refresh_token', refresh_token: refreshToken })
      if (answer.body.error === 'invalid_grant') {
        await db.updateTable('storage_connection').set({ status: 'needs_reauth', updated_at: sql`now()` }).where('user_id', '=', userId).where('provider', '=', row.provider).execute()
        continue
      }
      if (answer.status !== 200 || !answer.body.access_token) throw new ProviderUnavailable(row.provider, `refresh answered ${answer.status}`)
      access = answer.body.access_token
      await db.updateTable('storage_connection').set({
        access_token: deps.cipher.encrypt(access),
        refresh_token: deps.cipher.encrypt(answer.body.refresh_token ?? refreshToken),
        key_id: deps.cipher.keyId,
        expires_at: answer.body.expires_in ? new Date(Date.now() + answer.body.expires_in * 1000) : null,
        updated_at: sql`now()`
      }).where('user_id', '=', userId).where('provider', '=', row.provider).execute()
    }
    out.push({ provider: row.provider, accessToken: access })
  }
  return out
}
