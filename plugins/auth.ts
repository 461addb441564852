import { createPublicKey, generateKeyPairSync } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fastifyJwt from '@fastify/jwt'
import { createVerifier } from 'fast-jwt'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyRequest } from 'fastify'
import type { Account, Role } from '../db/types.js'
import type { components } from '../openapi/schema.js'
import { getOwnAccount, type AccountCache } from '../services/accounts/accounts.service.js'
import { DomainError } from '../services/errors.js'
import { hashToId } from '../services/hashing.js'
import { authenticatePartnerKey, type PartnerKeyIdentity } from '../services/partners/partners.service.js'
import { findPersonalToken, personalTokenMarker, recordPersonalTokenUse, touchEverySeconds } from '../services/accounts/personal-tokens.service.js'
import { scopesFor } from '../services/accounts/roles.js'
import { bearerTokenMatches } from './metrics.js'

export type { Role }

/** A signed-in user (bearer access token), or a user's personal access token (`tokenId`, no session). */
export interface UserPrincipal {
  kind: 'user'
  userId: string
  /** The session of an access token; null for a personal access token. */
  sessionId: string | null
  /** The personal access token the request came with; null for a session's access token. */
  tokenId: string | null
  role: Role
  scopes: readonly string[]
}

/** A partner's system, with one of the partner's API keys (X-Api-Key). */
export interface PartnerPrincipal {
  kind: 'partner'
  partnerId: string
  keyId: string
  scopes: readonly string[]
}

/** Who is calling, once a security handler has accepted the request. */
export type Principal = UserPrincipal | PartnerPrincipal

/** `sid` names the session: revoking it stops its access tokens at once. */
export interface AccessTokenClaims { sub: string, role: Role, scopes: string[], sid: string }

/**
 * A verified bearer credential: a session's access token (`sid`), or a personal access token (`tokenId`,
 * `readOnly`), whose scopes are its own as far as the account's role still grants them.
 */
export type BearerCredential =
  | (AccessTokenClaims & { tokenId: null, readOnly: false })
  | { sub: string, role: Role, scopes: string[], sid: null, tokenId: string, readOnly: boolean }

/**
 * A handler per securitySchemes name: throws unauthorized/forbidden, or sets request.principal. It runs before
 * the body is read, or (`readsBody`, a credential that may come in the body) once it is parsed, and in both
 * cases before anything of the request is validated.
 */
export type SecurityHandler = ((request: FastifyRequest, scopes: readonly string[]) => Promise<void>) & { readsBody?: boolean }

declare module 'fastify' {
  interface FastifyInstance {
    securityHandlers: Record<string, SecurityHandler>
    jwks: components['schemas']['JwkSet']
    issueAccessToken (claims: AccessTokenClaims): string
    /**
     * Revoked sessions and personal access tokens (by id), checked on every bearer request (Redis, or this
     * process when embedded).
     */
    revokedSessions: { add (ids: readonly string[]): Promise<void>, has (id: string): Promise<boolean> }
    /**
     * Verifies a session's access token (signature, issuer, audience, expiry, revocation, account) without
     * scopes. A personal access token is null here: Hasura and the queue dashboard take sessions only.
     */
    verifyBearer (header: string | undefined): Promise<AccessTokenClaims | null>
    /** The request's bearer credential (an access or a personal access token), verified once per request; null when it is not valid. */
    bearerOf (request: FastifyRequest): Promise<BearerCredential | null>
    /** Accounts read in the last seconds, per process; every change drops the entry in every process. */
    accountCache: AccountCache
    /** Key material other signatures derive their keys from (HKDF), so rotating the JWT key rotates them. */
    jwtSigningSecret: string
    /** The partner API key of a request (X-Api-Key), verified once per request; null when there is no valid one. */
    verifyPartnerKey (request: FastifyRequest): Promise<PartnerKeyIdentity | null>
  }
  interface FastifyRequest {
    principal: Principal | null
  }
  interface FastifyContextConfig {
    /** `x-session-only`: a personal access token is refused (403) whatever its scopes. */
    sessionOnly?: boolean
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessTokenClaims & { iat?: number }
    user: AccessTokenClaims & { iat: number, exp: number }
  }
}

const unauthorized = (detail: string) => new DomainError('unauthorized', 'Unauthorized', detail)
const invalidToken = () => unauthorized('The access token is not valid.')

/** Accounts read in the last seconds, per process; a change anywhere drops the entry everywhere. */
async function createAccountCache (app: FastifyInstance, ttlMs: number): Promise<AccountCache> {
  const { clock } = app
  const entries = new Map<string, { account: Account, until: number }>()
  await app.broadcast.subscribe('accounts:changed', (id) => { entries.delete(id as string) })
  // Missed messages while Redis was away: start afresh.
  app.broadcast.onReconnect(async () => { entries.clear() })
  return {
    get (id) {
      const entry = entries.get(id)
      if (!entry) return undefined
      if (entry.until > clock.now()) return entry.account
      entries.delete(id)
      return undefined
    },
    set (account) {
      if (entries.size >= 10_000) entries.delete(entries.keys().next().value!)
      entries.set(account.id, { account, until: clock.now() + ttlMs })
    },
    async invalidate (id) {
      entries.delete(id)
      await app.broadcast.publish('accounts:changed', id)
    }
  }
}

/** Loads the ES256 pair from config, or (outside production) from dataDir/jwt, generating it the first time. */
async function loadKeys (privateKey: string | null, publicKey: string | null, dataDir: string, env: string) {
  if (privateKey) {
    return { privateKey, publicKey: publicKey ?? createPublicKey(privateKey).export({ type: 'spki', format: 'pem' }).toString() }
  }
  if (env === 'production') throw new Error('auth: JWT_PRIVATE_KEY is required in production')
  const dir = join(dataDir, 'jwt')
  try {
    return { privateKey: await readFile(join(dir, 'private.pem'), 'utf8'), publicKey: await readFile(join(dir, 'public.pem'), 'utf8') }
  } catch {
    const pair = generateKeyPairSync('ec', {
      namedCurve: 'P-256',
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' }
    })
    await mkdir(dir, { recursive: true })
    await writeFile(join(dir, 'private.pem'), pair.privateKey, { mode: 0o600 })
    await writeFile(join(dir, 'public.pem'), pair.publicKey)
    return pair
  }
}

/** The key id of an EC key (public or private PEM): its RFC 7638 thumbprint, so a rotated key gets a new kid. */
export function keyIdOf (key: string): string {
  const jwk = createPublicKey(key).export({ format: 'jwk' })
  return hashToId(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y }))
}

/** The public JWK of an ES256 key, with its key id (keyIdOf). */
function publicJwk (publicKey: string, what: string): components['schemas']['JwkSet']['keys'][number] & { kid: string } {
  const jwk = createPublicKey(publicKey).export({ format: 'jwk' })
  if (jwk.crv !== 'P-256') throw new Error(`auth: ${what} must be an EC P-256 (ES256) key`)
  return { kty: 'EC', crv: jwk.crv, x: jwk.x!, y: jwk.y!, kid: keyIdOf(publicKey), alg: 'ES256', use: 'sig' }
}

/** The kid of a token's header, or null: at most a few headers are ever seen (one per key), so they are kept. */
function headerKidReader () {
  const seen = new Map<string, string | null>()
  return (token: string): string | null => {
    const segment = token.slice(0, token.indexOf('.'))
    let kid = seen.get(segment)
    if (kid === undefined) {
      try {
        const header = JSON.parse(Buffer.from(segment, 'base64url').toString()) as { kid?: unknown }
        kid = typeof header.kid === 'string' ? header.kid : null
      } catch {
        kid = null
      }
      // Forged headers may all differ: remember a bounded number, never grow without end.
      if (seen.size < 64) seen.set(segment, kid)
    }
    return kid
  }
}

export default fp(async function authPlugin (app) {
  const { jwt: cfg, dataDir, env } = app.config
  const { clock } = app
  const keys = await loadKeys(cfg.privateKey, cfg.publicKey, dataDir, env)
  const current = publicJwk(keys.publicKey, 'the JWT key pair')
  const ttl = cfg.accessTokenTtl
  // A retired key (JWT_PREVIOUS_PUBLIC_KEYS) still verifies the tokens it signed before the rotation: those
  // live at most one access-token lifetime, so it is accepted for that long after this process started.
  const startedAt = clock.now()
  const retiredUntil = startedAt + ttl * 1000
  const previous = cfg.previousPublicKeys.map((pem, i) => publicJwk(pem, `JWT_PREVIOUS_PUBLIC_KEYS[${i}]`))
    .filter((jwk) => jwk.kid !== current.kid)
  if (previous.length > 0) app.log.info({ kids: previous.map((k) => k.kid), until: new Date(retiredUntil).toISOString() }, 'auth: retired JWT keys accepted for one token lifetime')

  await app.register(fastifyJwt, {
    secret: { private: keys.privateKey, public: keys.publicKey },
    // A number is seconds to @fastify/jwt (it multiplies by 1000 for fast-jwt).
    sign: { algorithm: 'ES256', iss: cfg.issuer, aud: cfg.audience, expiresIn: ttl, kid: current.kid },
    verify: { algorithms: ['ES256'], allowedIss: cfg.issuer, allowedAud: cfg.audience }
  })

  // One verifier per key we accept, chosen by the token's kid: a token naming no kid, or a kid we do not
  // know, is refused before any signature check. Expiry is checked below against the app's clock, so
  // fast-jwt only checks the signature, issuer and audience (and caches that: a token is verified once).
  const verifierFor = (publicKey: string) => createVerifier({
    key: publicKey,
    algorithms: ['ES256'],
    allowedIss: cfg.issuer,
    allowedAud: cfg.audience,
    requiredClaims: ['sub', 'sid', 'iat', 'exp'],
    ignoreExpiration: true,
    cache: 10_000
  })
  const verifiers = new Map<string, { verify: (token: string) => AccessTokenClaims & { iat: number, exp: number }, retired: boolean }>()
  verifiers.set(current.kid, { verify: verifierFor(keys.publicKey), retired: false })
  cfg.previousPublicKeys.forEach((pem, i) => {
    const kid = previous[i]?.kid
    if (kid) verifiers.set(kid, { verify: verifierFor(pem), retired: true })
  })
  const kidOf = headerKidReader()

  app.decorate('jwks', { keys: [current, ...previous] })
  app.decorate('issueAccessToken', (claims: AccessTokenClaims) => app.jwt.sign({ ...claims, iat: Math.floor(clock.now() / 1000) }))
  app.decorate('jwtSigningSecret', keys.privateKey)
  app.decorateRequest('principal', null)

  // Revoked sessions, kept as long as an access token of them could still be valid: every token of a session
  // was issued before its revocation and lives at most `ttl`, so `ttl` after the revocation covers each one's
  // own `exp` (tokens claiming a longer life are refused below). Every process holds the set in memory, so a
  // bearer check costs no round trip: Redis keeps the keys (with their TTL) and announces each revocation on
  // a channel; a process (re)connecting reloads the keys.
  const revoked = new Map<string, number>()
  const remember = (id: string, until: number) => { revoked.set(id, until) }
  const keyPrefix = 'revoked-session:'
  const reload = async () => {
    if (!app.hasDecorator('redis')) return
    let cursor = '0'
    do {
      const [next, keys] = await app.redis.scan(cursor, 'MATCH', `${app.config.redis.prefix}${keyPrefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length === 0) continue
      const unprefixed = keys.map((k) => k.slice(app.config.redis.prefix.length))
      const ttls = await Promise.all(unprefixed.map((k) => app.redis.pttl(k)))
      unprefixed.forEach((k, i) => { if (ttls[i]! > 0) remember(k.slice(keyPrefix.length), clock.now() + ttls[i]!) })
    } while (cursor !== '0')
  }
  await app.broadcast.subscribe('sessions:revoked', (ids) => {
    for (const id of ids as string[]) remember(id, clock.now() + ttl * 1000)
  })
  app.broadcast.onReconnect(reload)
  await reload()

  app.decorate('revokedSessions', {
    async add (ids: readonly string[]) {
      if (ids.length === 0) return
      for (const id of ids) remember(id, clock.now() + ttl * 1000)
      if (app.hasDecorator('redis')) {
        const multi = app.redis.multi()
        // One second more than a token can live: Redis counts whole seconds.
        for (const id of ids) multi.set(`${keyPrefix}${id}`, '1', 'EX', ttl + 1)
        await multi.exec()
      }
      await app.broadcast.publish('sessions:revoked', ids)
    },
    async has (id: string) { return isRevoked(id) }
  })
  function isRevoked (id: string): boolean {
    const until = revoked.get(id)
    if (until === undefined) return false
    if (until >= clock.now()) return true
    revoked.delete(id)
    return false
  }

  const accountCache = await createAccountCache(app, 5000)
  app.decorate('accountCache', accountCache)

  /**
   * A bearer token is a credential only while: its signature verifies under a key we hold (by kid), it is
   * no older than its lifetime and claims no longer one than we issue, its session is not revoked, and its
   * account still exists, is enabled and has the role the token names. The account is read through the
   * per-process cache every change invalidates, so a disabled, deleted or re-roled account's tokens stop
   * even where a revocation was missed.
   */
  function bearerToken (header: string | undefined): string {
    if (!header) throw unauthorized('A bearer token is required.')
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    if (!match) throw unauthorized('The Authorization header must be "Bearer <token>".')
    return match[1]!
  }

  async function verify (header: string | undefined): Promise<AccessTokenClaims> {
    const token = bearerToken(header)
    return verifyAccessToken(token)
  }

  async function verifyAccessToken (token: string): Promise<AccessTokenClaims> {
    const kid = kidOf(token)
    const verifier = kid === null ? undefined : verifiers.get(kid)
    if (!verifier) throw invalidToken()
    let claims: AccessTokenClaims & { iat: number, exp: number }
    try {
      claims = verifier.verify(token)
    } catch {
      throw invalidToken()
    }
    const now = clock.now()
    if (typeof claims.iat !== 'number' || typeof claims.exp !== 'number' || claims.exp - claims.iat > ttl || claims.iat * 1000 > now + 60_000) throw invalidToken()
    if (claims.exp * 1000 <= now) throw unauthorized('The access token has expired.')
    if (verifier.retired && now > retiredUntil) throw invalidToken()
    if (typeof claims.sid !== 'string' || typeof claims.sub !== 'string' || isRevoked(claims.sid)) throw unauthorized('The session of this access token has ended.')
    const account = await getOwnAccount(app.db, { cache: accountCache }, claims.sub)
    if (account.disabled_at) throw unauthorized('The account of this access token is disabled.')
    if (account.role !== claims.role) throw unauthorized('The role of this account has changed. Sign in again.')
    return claims
  }
  app.decorate('verifyBearer', (header: string | undefined) => verify(header).catch(() => null))

  // Personal access tokens (`frl_pat_…`), read by the hash of the presented token and kept per process for a
  // few seconds, so a busy token costs no query per request. Revocation is at once all the same: a revoked
  // token's id joins the revocation set (memory of every process, Redis, a broadcast) before the revoking
  // request answers, and is checked after the cache; the set keeps it longer than a cache entry lives. The
  // account is read through the account cache, as for sessions: a disabled or deleted account stops its
  // tokens at once. No write on the hot path: last_used_at at most once a minute per token.
  const patTtlMs = 5000
  const pats = new Map<string, { row: NonNullable<Awaited<ReturnType<typeof findPersonalToken>>>, until: number }>()
  async function personalTokenRow (token: string) {
    const now = clock.now()
    const cached = pats.get(token)
    if (cached && cached.until > now) return cached.row
    const row = await findPersonalToken(app.db, token)
    if (!row) {
      pats.delete(token)
      return undefined
    }
    if (pats.size >= 10_000) pats.delete(pats.keys().next().value!)
    pats.set(token, { row, until: now + patTtlMs })
    return row
  }
  app.broadcast.onReconnect(async () => { pats.clear() })

  async function verifyPersonalToken (token: string): Promise<BearerCredential> {
    const row = await personalTokenRow(token)
    if (!row) throw unauthorized('The personal access token is not valid.')
    const now = clock.now()
    if (row.revoked_at !== null || isRevoked(row.id)) throw unauthorized('The personal access token has been revoked.')
    if (row.expires_at.getTime() <= now) throw unauthorized('The personal access token has expired.')
    const account = await getOwnAccount(app.db, { cache: accountCache }, row.account_id)
    if (account.disabled_at) throw unauthorized('The account of this personal access token is disabled.')
    if (row.last_used_at === null || row.last_used_at.getTime() <= now - touchEverySeconds * 1000) {
      // Seen as used from now in this process, whatever the write does: one attempt a minute, not one a request.
      row.last_used_at = new Date(now)
      // Bookkeeping: a failed write is logged, never the caller's refusal.
      await recordPersonalTokenUse(app.db, row, new Date(now)).catch((err: unknown) => {
        app.log.warn({ err, tokenId: row.id }, 'auth: recording a personal access token use failed')
      })
    }
    // Its own scopes, as far as the account's role still grants them (a demoted owner's tokens shrink).
    const granted = scopesFor(account.role)
    return { sub: account.id, role: account.role, scopes: row.scopes.filter((s) => granted.includes(s)), sid: null, tokenId: row.id, readOnly: row.read_only }
  }
  async function verifyCredential (header: string | undefined): Promise<BearerCredential> {
    const token = bearerToken(header)
    if (token.startsWith(personalTokenMarker)) return verifyPersonalToken(token)
    return { ...(await verifyAccessToken(token)), tokenId: null, readOnly: false }
  }

  // The rate limiter (keyed by user) and the security handler both need the caller: verified once per request.
  const bearers = new WeakMap<FastifyRequest, Promise<BearerCredential>>()
  function bearerOf (request: FastifyRequest): Promise<BearerCredential> {
    let outcome = bearers.get(request)
    if (!outcome) {
      outcome = verifyCredential(request.headers.authorization)
      bearers.set(request, outcome)
    }
    return outcome
  }
  app.decorate('bearerOf', (request: FastifyRequest) => bearerOf(request).catch(() => null))

  const safeMethods = new Set(['GET', 'HEAD'])
  const bearer: SecurityHandler = async (request, scopes) => {
    const credential = await bearerOf(request)
    const granted = new Set(credential.scopes ?? [])
    const missing = scopes.filter((s) => !granted.has(s))
    if (missing.length > 0) {
      throw new DomainError('forbidden', 'Forbidden', `This operation needs the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`)
    }
    if (credential.tokenId !== null) {
      if (request.routeOptions.config.sessionOnly) {
        throw new DomainError('forbidden', 'Forbidden', 'A personal access token cannot call this operation: sign in (a session\'s access token).')
      }
      if (credential.readOnly && !safeMethods.has(request.method)) {
        throw new DomainError('forbidden', 'Forbidden', 'This personal access token is read-only: it may only read (GET).')
      }
    }
    request.principal = { kind: 'user', userId: credential.sub, sessionId: credential.sid, tokenId: credential.tokenId, role: credential.role, scopes: [...granted] }
  }

  // Partner keys: X-Api-Key rather than Authorization, which always holds our JWTs here (the `key: user` rate
  // limit, Hasura and the SDK read it as one). The outcome is kept per request, so the rate limiter (which
  // keys partner operations by API key and runs first) and the security handler share one lookup.
  const partnerKeys = new WeakMap<FastifyRequest, Promise<PartnerKeyIdentity>>()
  function partnerKeyOf (request: FastifyRequest): Promise<PartnerKeyIdentity> {
    let outcome = partnerKeys.get(request)
    if (!outcome) {
      const header = request.headers['x-api-key']
      outcome = authenticatePartnerKey(app.db, typeof header === 'string' ? header : undefined)
      partnerKeys.set(request, outcome)
    }
    return outcome
  }
  app.decorate('verifyPartnerKey', (request: FastifyRequest) => partnerKeyOf(request).catch(() => null))

  const partnerKey: SecurityHandler = async (request, scopes) => {
    const key = await partnerKeyOf(request)
    const missing = scopes.filter((s) => !key.scopes.includes(s))
    if (missing.length > 0) {
      throw new DomainError('forbidden', 'Forbidden', `This operation needs the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`)
    }
    request.principal = { kind: 'partner', partnerId: key.partnerId, keyId: key.keyId, scopes: key.scopes }
  }

  // The deployment's scraper (METRICS_TOKEN as a bearer token): GET /metrics, and the details of /readyz.
  // Without a configured token nothing passes: the API port serves metrics to no one (METRICS_PORT does).
  const metricsToken: SecurityHandler = async (request) => {
    const token = app.config.metrics.token
    if (!token || !bearerTokenMatches(request.headers.authorization, token)) {
      throw unauthorized('The metrics scrape token is required: "Authorization: Bearer <METRICS_TOKEN>".')
    }
  }

  app.decorate('securityHandlers', { bearer, partnerKey, metricsToken })
}, { fastify: '5.x', name: 'auth', dependencies: ['config', 'clock', 'errors', 'db', 'redis', 'broadcast'] })
