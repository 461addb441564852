import { createHash, createPublicKey, generateKeyPairSync } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fastifyJwt from '@fastify/jwt'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import type { components } from '../openapi/schema.js'
import { DomainError } from '../services/errors.js'
import { authenticatePartnerKey, type PartnerKeyIdentity } from '../services/partners/partners.service.js'
import { bearerTokenMatches } from './metrics.js'

import type { Role } from '../db/types.js'

export type { Role }

/** A signed-in user (bearer access token). */
export interface UserPrincipal {
  kind: 'user'
  userId: string
  sessionId: string
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

/** A handler per securitySchemes name: throws unauthorized/forbidden, or sets request.principal. */
export type SecurityHandler = (request: FastifyRequest, scopes: readonly string[]) => Promise<void>

declare module 'fastify' {
  interface FastifyInstance {
    securityHandlers: Record<string, SecurityHandler>
    jwks: components['schemas']['JwkSet']
    issueAccessToken (claims: AccessTokenClaims): string
    /** Revoked sessions, checked on every bearer request (Redis, or this process when embedded). */
    revokedSessions: { add (ids: readonly string[]): Promise<void>, has (id: string): Promise<boolean> }
    /** Verifies a bearer token (signature, issuer, audience, expiry, revocation) without scopes. */
    verifyBearer (header: string | undefined): Promise<AccessTokenClaims | null>
    /** Key material other signatures derive their keys from (HKDF), so rotating the JWT key rotates them. */
    jwtSigningSecret: string
    /** The partner API key of a request (X-Api-Key), verified once per request; null when there is no valid one. */
    verifyPartnerKey (request: FastifyRequest): Promise<PartnerKeyIdentity | null>
  }
  interface FastifyRequest {
    principal: Principal | null
  }
}

declare module '@fastify/jwt' {
  interface FastifyJWT {
    payload: AccessTokenClaims
    user: AccessTokenClaims & { iat: number, exp: number }
  }
}

const unauthorized = (detail: string) => new DomainError('unauthorized', 'Unauthorized', detail)

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

export default fp(async function authPlugin (app) {
  const { jwt: cfg, dataDir, env } = app.config
  const keys = await loadKeys(cfg.privateKey, cfg.publicKey, dataDir, env)
  const jwk = createPublicKey(keys.publicKey).export({ format: 'jwk' })
  if (jwk.crv !== 'P-256') throw new Error('auth: the JWT key pair must be EC P-256 (ES256)')
  // RFC 7638 thumbprint as the key id, so a rotated key gets a new kid.
  const kid = createHash('sha256').update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y })).digest('base64url')

  await app.register(fastifyJwt, {
    secret: { private: keys.privateKey, public: keys.publicKey },
    sign: { algorithm: 'ES256', iss: cfg.issuer, aud: cfg.audience, expiresIn: cfg.accessTokenTtl * 1000, kid },
    // cache: a token verified once is not verified again (fast-jwt keeps it until it expires).
    verify: { algorithms: ['ES256'], allowedIss: cfg.issuer, allowedAud: cfg.audience, cache: 10_000 }
  })

  app.decorate('jwks', { keys: [{ kty: 'EC', crv: jwk.crv, x: jwk.x!, y: jwk.y!, kid, alg: 'ES256', use: 'sig' }] })
  app.decorate('issueAccessToken', (claims: AccessTokenClaims) => app.jwt.sign(claims))
  app.decorate('jwtSigningSecret', keys.privateKey)
  app.decorateRequest('principal', null)

  // Revoked sessions, kept as long as an access token of them could still be valid. Every process holds
  // the set in memory, so a bearer check costs no round trip: Redis keeps the keys (with their TTL) and
  // announces each revocation on a channel; a process (re)connecting reloads the keys.
  const ttl = cfg.accessTokenTtl
  const revoked = new Map<string, number>()
  const remember = (id: string, until: number) => { revoked.set(id, until) }
  const keyPrefix = 'revoked-session:'
  // Redis keeps each revocation (with its TTL) for processes that start later or were away.
  const reload = async () => {
    if (!app.hasDecorator('redis')) return
    let cursor = '0'
    do {
      const [next, keys] = await app.redis.scan(cursor, 'MATCH', `${app.config.redis.prefix}${keyPrefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length === 0) continue
      const unprefixed = keys.map((k) => k.slice(app.config.redis.prefix.length))
      const ttls = await Promise.all(unprefixed.map((k) => app.redis.pttl(k)))
      unprefixed.forEach((k, i) => { if (ttls[i]! > 0) remember(k.slice(keyPrefix.length), Date.now() + ttls[i]!) })
    } while (cursor !== '0')
  }
  await app.broadcast.subscribe('sessions:revoked', (ids) => {
    for (const id of ids as string[]) remember(id, Date.now() + ttl * 1000)
  })
  app.broadcast.onReconnect(reload)
  await reload()

  app.decorate('revokedSessions', {
    async add (ids: readonly string[]) {
      if (ids.length === 0) return
      for (const id of ids) remember(id, Date.now() + ttl * 1000)
      if (app.hasDecorator('redis')) {
        const multi = app.redis.multi()
        for (const id of ids) multi.set(`${keyPrefix}${id}`, '1', 'EX', ttl)
        await multi.exec()
      }
      await app.broadcast.publish('sessions:revoked', ids)
    },
    async has (id: string) { return isRevoked(id) }
  })
  function isRevoked (id: string): boolean {
    const until = revoked.get(id)
    if (until === undefined) return false
    if (until >= Date.now()) return true
    revoked.delete(id)
    return false
  }

  async function verify (header: string | undefined): Promise<AccessTokenClaims> {
    if (!header) throw unauthorized('A bearer token is required.')
    const match = /^Bearer\s+(\S+)$/i.exec(header)
    if (!match) throw unauthorized('The Authorization header must be "Bearer <token>".')
    let claims: AccessTokenClaims
    try {
      claims = app.jwt.verify<AccessTokenClaims>(match[1]!)
    } catch (err) {
      const expired = (err as { code?: string }).code === 'FST_JWT_AUTHORIZATION_TOKEN_EXPIRED'
      throw unauthorized(expired ? 'The access token has expired.' : 'The access token is not valid.')
    }
    if (typeof claims.sid !== 'string' || await app.revokedSessions.has(claims.sid)) throw unauthorized('The session of this access token has ended.')
    return claims
  }
  app.decorate('verifyBearer', (header: string | undefined) => verify(header).catch(() => null))

  const bearer: SecurityHandler = async (request, scopes) => {
    const claims = await verify(request.headers.authorization)
    const granted = new Set(claims.scopes ?? [])
    const missing = scopes.filter((s) => !granted.has(s))
    if (missing.length > 0) {
      throw new DomainError('forbidden', 'Forbidden', `This operation needs the scope${missing.length > 1 ? 's' : ''} ${missing.join(', ')}.`)
    }
    request.principal = { kind: 'user', userId: claims.sub, sessionId: claims.sid, role: claims.role, scopes: [...granted] }
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
}, { fastify: '5.x', name: 'auth', dependencies: ['config', 'errors', 'db', 'redis', 'broadcast'] })
