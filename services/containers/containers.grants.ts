// Connection grants (issue 22, docs/sessions.md): what a client needs to connect to its container, for a
// lifetime it asks for within bounds. A grant is a row (revocable) and a JWT signed with the server's key
// (audience the container, `jti` the row), which the host agent verifies with the JWKS or by introspection.
import { createPublicKey } from 'node:crypto'
import { createSigner, createVerifier } from 'fast-jwt'
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Container, ContainerGrant, DB } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import type { Clock } from '../clock.js'
import { defineError, fieldErrors } from '../errors.js'
import { ContainerNotFound } from './containers.errors.js'
import * as repo from './containers.repository.js'

export const GrantNotFound = defineError('not_found', 'Grant not found', (id: string) => `This container has no grant ${id}.`)
export const NotConnectable = defineError('conflict', 'Conflict', (id: string, state: string) => `Container ${id} is ${state}: a grant is given once it runs, and while it does.`)
export const LifetimeOutOfBounds = defineError('unprocessable', 'Lifetime out of bounds',
  (min: number, max: number) => `A grant lives between ${min} and ${max} seconds.`,
  (min: number, max: number) => fieldErrors('/body/lifetimeSeconds', `must be between ${min} and ${max}`))

/** The audience of a container's grants: a grant is good for that container only. */
export const audienceOf = (containerId: string) => `urn:fractal:container:${containerId}`

export interface GrantClaims { jti: string, sub: string, aud: string, cid: string, host: string, iat: number, exp: number }

/** Signs and verifies grant tokens (ES256, the key of the access tokens and the JWKS, another audience). */
export interface GrantTokens {
  sign (claims: Omit<GrantClaims, 'aud'>): string
  /** The claims of a token whose signature, issuer and audience verify (expiry is the caller's), else null. */
  verify (token: string): GrantClaims | null
}

export function createGrantTokens (options: { privateKey: string, kid: string, issuer: string }): GrantTokens {
  const signer = createSigner({ key: options.privateKey, algorithm: 'ES256', kid: options.kid, iss: options.issuer })
  const verifier = createVerifier({
    key: createPublicKey(options.privateKey).export({ type: 'spki', format: 'pem' }).toString(),
    algorithms: ['ES256'],
    allowedIss: options.issuer,
    allowedAud: /^urn:fractal:container:[0-9a-f-]{36}$/,
    requiredClaims: ['jti', 'sub', 'cid', 'exp', 'aud'],
    // Expiry is checked against the app's clock (tests move it).
    ignoreExpiration: true
  })
  return {
    sign: (claims) => signer({ ...claims, aud: audienceOf(claims.cid) }),
    verify (token) {
      try {
        const claims = verifier(token) as GrantClaims
        return claims.aud === audienceOf(claims.cid) ? claims : null
      } catch {
        return null
      }
    }
  }
}

export interface GrantDeps {
  clock: Clock
  tokens: GrantTokens
  bounds: { minLifetimeSeconds: number, maxLifetimeSeconds: number, defaultLifetimeSeconds: number }
}

const connectable = (c: Container) => (c.state === 'available' || c.state === 'in_use') && c.host_ip !== null && c.session_ended_at === null

async function ownContainer (db: Kysely<DB>, userId: string, id: string) {
  const container = await repo.findContainer(db, id)
  if (!container || container.user_id !== userId) throw new ContainerNotFound(id)
  return container
}

/** A grant for one of the user's running containers, for `lifetimeSeconds` (within the bounds); audited. */
export async function createGrant (db: Kysely<DB>, deps: GrantDeps, userId: string, containerId: string, lifetimeSeconds?: number) {
  const { minLifetimeSeconds: min, maxLifetimeSeconds: max, defaultLifetimeSeconds } = deps.bounds
  const lifetime = lifetimeSeconds ?? defaultLifetimeSeconds
  if (lifetime < min || lifetime > max) throw new LifetimeOutOfBounds(min, max)
  const container = await ownContainer(db, userId, containerId)
  if (!connectable(container)) throw new NotConnectable(containerId, container.session_ended_at ? 'ending' : container.state)
  const now = deps.clock.now()
  const grant = await db.transaction().execute(async (trx) => {
    const row = await trx.insertInto('container_grant')
      .values({ container_id: containerId, user_id: userId, created_at: new Date(now), expires_at: new Date(now + lifetime * 1000) })
      .returningAll().executeTakeFirstOrThrow()
    await recordAudit(trx, { action: 'container.grant_created', actorId: userId, target: { type: 'container', id: containerId }, details: { grantId: row.id, expiresAt: row.expires_at.toISOString() } })
    return row
  })
  const token = deps.tokens.sign({
    jti: grant.id,
    sub: userId,
    cid: containerId,
    host: container.host_ip!,
    iat: Math.floor(now / 1000),
    // A token expires at the grant's second or before it, never after.
    exp: Math.floor(grant.expires_at.getTime() / 1000)
  })
  return { grant, token, container }
}

/** Revokes one grant of the user's container (204 also when already revoked or expired); audited. */
export async function revokeGrant (db: Kysely<DB>, clock: Clock, userId: string, containerId: string, grantId: string) {
  await ownContainer(db, userId, containerId)
  await db.transaction().execute(async (trx) => {
    const grant = await trx.selectFrom('container_grant').select(['id', 'revoked_at']).where('id', '=', grantId).where('container_id', '=', containerId).forUpdate().executeTakeFirst()
    if (!grant) throw new GrantNotFound(grantId)
    if (grant.revoked_at) return
    await trx.updateTable('container_grant').set({ revoked_at: new Date(clock.now()) }).where('id', '=', grantId).execute()
    await recordAudit(trx, { action: 'container.grant_revoked', actorId: userId, target: { type: 'container', id: containerId }, details: { grantId } })
  })
}

/** Revokes every live grant of the user's container; audited with how many. */
export async function revokeGrants (db: Kysely<DB>, clock: Clock, userId: string, containerId: string) {
  await ownContainer(db, userId, containerId)
  const now = new Date(clock.now())
  await db.transaction().execute(async (trx) => {
    const revoked = await trx.updateTable('container_grant').set({ revoked_at: now })
      .where('container_id', '=', containerId).where('revoked_at', 'is', null).where('expires_at', '>', now)
      .returning('id').execute()
    await recordAudit(trx, { action: 'container.grants_revoked', actorId: userId, target: { type: 'container', id: containerId }, details: { grants: revoked.length } })
  })
}

/**
 * The live grant a token stands for, with its container: signature, issuer and audience verify, it has not
 * expired (by the app's clock) or been revoked, and its container is live (running, its session not ended).
 * Null otherwise, whatever the reason: a caller probing tokens learns nothing.
 */
export async function liveGrant (db: Kysely<DB>, deps: Pick<GrantDeps, 'clock' | 'tokens'>, token: string): Promise<{ grant: ContainerGrant, container: Container } | null> {
  const claims = deps.tokens.verify(token)
  const now = deps.clock.now()
  if (!claims || claims.exp * 1000 <= now || !/^[0-9a-f-]{36}$/i.test(claims.jti) || !/^[0-9a-f-]{36}$/i.test(claims.cid)) return null
  const row = await db.selectFrom('container_grant')
    .innerJoin('container', 'container.id', 'container_grant.container_id')
    .selectAll('container')
    .select(['container_grant.id as grant_id', 'container_grant.user_id as grant_user_id', 'container_grant.created_at as grant_created_at',
      'container_grant.expires_at as grant_expires_at', 'container_grant.revoked_at as grant_revoked_at'])
    .where('container_grant.id', '=', claims.jti).where('container_grant.container_id', '=', claims.cid)
    .where('container_grant.revoked_at', 'is', null).where('container_grant.expires_at', '>', new Date(now))
    .where(sql<boolean>`container.user_id = container_grant.user_id`)
    .executeTakeFirst()
  if (!row) return null
  const { grant_id: id, grant_user_id: userId, grant_created_at: createdAt, grant_expires_at: expiresAt, grant_revoked_at: revokedAt, ...container } = row
  if (!connectable(container)) return null
  return { grant: { id, container_id: container.id, user_id: userId, created_at: createdAt, expires_at: expiresAt, revoked_at: revokedAt }, container }
}

/** The host agent's check: a live grant of a container that runs on the calling host. */
export async function introspectGrant (db: Kysely<DB>, deps: Pick<GrantDeps, 'clock' | 'tokens'>, hostId: string, token: string) {
  const live = await liveGrant(db, deps, token)
  if (!live) return { active: false as const }
  const host = await db.selectFrom('host').select(['ip', 'instance_id']).where('id', '=', hostId).executeTakeFirst()
  const onHost = !!host && (live.container.host_instance_id !== null
    ? live.container.host_instance_id === host.instance_id
    : live.container.host_ip !== null && live.container.host_ip === host.ip)
  if (!onHost) return { active: false as const }
  return { active: true as const, grantId: live.grant.id, containerId: live.container.id, userId: live.grant.user_id, expiresAt: live.grant.expires_at.toISOString() }
}
