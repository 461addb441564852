// Personal access tokens: a user's or an operator's own credential for automation, with chosen scopes (a
// subset of their own), read-only or not, and an expiry. Verified in plugins/auth.ts as a bearer token.
import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { DB, PersonalAccessToken, Role } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import type { Clock } from '../clock.js'
import { hashToId, newSecret } from '../hashing.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import { BadTokenExpiry, BadTokenScopes, PersonalTokenNotFound, TooManyPersonalTokens } from './accounts.errors.js'
import type { SessionRevocations } from './accounts.service.js'
import * as repo from './personal-tokens.repository.js'
import { scopesFor } from './roles.js'

const day = 86_400_000
/** Without `expiresAt`: 30 days (or the configured maximum when shorter). */
const defaultLifetimeDays = 30
/** last_used_at is written at most this often per token (not per request). */
export const touchEverySeconds = 60
/** The first use of a token after this long without an audited use is audited (one event per burst of use). */
export const auditUseEverySeconds = 3600

// `frl_pat_<12 hex>_<43 base64url>`: `frl_pat_` tells it from a JWT (and a partner key, `frp_`), the 12 hex
// digits are the prefix lists show, the rest is 256 random bits. Only a SHA-256 of the whole token is stored.
const tokenPattern = /^frl_pat_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/
export const personalTokenMarker = 'frl_pat_'

export function looksLikePersonalToken (value: string): boolean {
  return tokenPattern.test(value)
}

function newPersonalToken () {
  const prefix = `${personalTokenMarker}${randomBytes(6).toString('hex')}`
  const token = `${prefix}_${newSecret()}`
  return { token, prefix, hash: hashToId(token) }
}

export interface PersonalTokenDeps {
  clock: Clock
  revocations: SessionRevocations
  settings: { personalTokenMaxTtlDays: number, personalTokensPerAccount: number }
}

interface PageQuery { limit: number, cursor?: string | undefined }
const keysetOf = (cursor: string | undefined) => cursor ? decodeKeyset(cursor) : null

/** Makes a token for the caller and answers it once (`token`); only its hash is kept. Audited. */
export async function createPersonalToken (
  db: Kysely<DB>, deps: PersonalTokenDeps, owner: { userId: string, role: Role },
  input: { name: string, scopes: string[], readOnly?: boolean | undefined, expiresAt?: string | undefined }
) {
  const held = scopesFor(owner.role)
  const beyond = input.scopes.filter((s) => !held.includes(s))
  if (beyond.length > 0) throw new BadTokenScopes(beyond)
  const now = deps.clock.now()
  const maxDays = deps.settings.personalTokenMaxTtlDays
  const expiresAt = input.expiresAt ? new Date(input.expiresAt) : new Date(now + Math.min(defaultLifetimeDays, maxDays) * day)
  if (expiresAt.getTime() <= now) throw new BadTokenExpiry('must be in the future')
  // A minute of slack for a client that computed "the longest allowed" a moment before we did.
  if (expiresAt.getTime() > now + maxDays * day + 60_000) throw new BadTokenExpiry(`must be at most ${maxDays} days ahead`)
  const { token, prefix, hash } = newPersonalToken()
  return db.transaction().execute(async (trx) => {
    // One account's creations take turns, so the limit holds under concurrent requests.
    await trx.selectFrom('account').select('id').where('id', '=', owner.userId).forUpdate().execute()
    if (await repo.countLiveTokens(trx, owner.userId, new Date(now)) >= deps.settings.personalTokensPerAccount) {
      throw new TooManyPersonalTokens(deps.settings.personalTokensPerAccount)
    }
    const row = await repo.insertToken(trx, {
      account_id: owner.userId, name: input.name.trim(), prefix, token_hash: hash, scopes: [...new Set(input.scopes)], read_only: input.readOnly ?? false, expires_at: expiresAt
    })
    await recordAudit(trx, {
      action: 'personal_token.created',
      actorId: owner.userId,
      target: { type: 'personal_access_token', id: row.id },
      details: { accountId: owner.userId, name: row.name, prefix, scopes: row.scopes, readOnly: row.read_only, expiresAt: expiresAt.toISOString() }
    })
    return { row, token }
  })
}

/** One account's tokens (`accountId`), or everyone's (null): newest first, revoked and expired included. */
export async function listPersonalTokens (db: Kysely<DB>, accountId: string | null, query: PageQuery) {
  const rows = await repo.listTokens(db, { accountId }, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  return pageOf(rows, query.limit)
}

/**
 * Revokes a token at once (every process refuses it from now on: the revocation set, as for sessions).
 * `owner`: only that account's token (another's is a 404, like one that does not exist); null for an admin.
 * Revoking it again changes nothing and is not audited twice.
 */
export async function revokePersonalToken (db: Kysely<DB>, deps: PersonalTokenDeps, actorId: string, tokenId: string, owner: string | null) {
  const revoked = await db.transaction().execute(async (trx) => {
    const row = await repo.revokeToken(trx, tokenId, owner, new Date(deps.clock.now()))
    if (!row) {
      if (!(await repo.findToken(trx, tokenId, owner))) throw new PersonalTokenNotFound(tokenId)
      return null
    }
    await recordAudit(trx, {
      action: 'personal_token.revoked',
      actorId,
      target: { type: 'personal_access_token', id: row.id },
      details: { accountId: row.account_id, name: row.name, prefix: row.prefix, by: owner === null && actorId !== row.account_id ? 'admin' : 'owner' }
    })
    return row
  })
  if (revoked) await deps.revocations.revoke([revoked.id])
}

/** What a bearer check needs of a token: by the hash of the presented value, without any write. */
export async function findPersonalToken (db: Kysely<DB>, presented: string) {
  if (!looksLikePersonalToken(presented)) return undefined
  return repo.findTokenByHash(db, hashToId(presented))
}

/**
 * Records a use: last_used_at at most once a minute per token, and the first use after an hour without an
 * audited one goes to the audit trail (`personal_token.used`), so a burst of calls is one event.
 */
export async function recordPersonalTokenUse (db: Kysely<DB>, token: Pick<PersonalAccessToken, 'id' | 'account_id'>, now: Date) {
  await db.transaction().execute(async (trx) => {
    const touched = await repo.touchToken(trx, token.id, now, touchEverySeconds, auditUseEverySeconds)
    if (touched?.audit) {
      await recordAudit(trx, { action: 'personal_token.used', actorId: token.account_id, target: { type: 'personal_access_token', id: token.id } })
    }
  })
}

/** Revokes every token of an account (it is disabled or deleted); returns their ids for the revocation set. */
export function revokeAccountTokens (db: Kysely<DB>, accountId: string, now: Date) {
  return repo.revokeAccountTokens(db, accountId, now)
}
