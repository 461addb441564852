import type { Kysely } from 'kysely'
import type { DB, PartnerScope } from '../../db/types.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import {
  BadKeyExpiry, PartnerKeyExpired, PartnerKeyInvalid, PartnerKeyMissing, PartnerKeyNotFound, PartnerKeyRevoked,
  PartnerNameTaken, PartnerNotFound, PartnerUserNotFound
} from './partners.errors.js'
import { hashToId } from '../hashing.js'
import { looksLikePartnerKey, newPartnerKey } from './partners.keys.js'
import * as repo from './partners.repository.js'
import { recordAudit } from '../audit/audit.service.js'
import { hours } from '../usage/usage.service.js'

const day = 86_400_000
/** The longest a key may live (and how long it lives when no expiry is given). */
export const maxKeyLifetimeMs = 365 * day
/** last_used_at is written at most this often per key. */
const touchEverySeconds = 60

interface PageQuery { limit: number, cursor?: string }
const keysetOf = (cursor: string | undefined) => cursor ? decodeKeyset(cursor) : null

export async function createPartner (db: Kysely<DB>, actorId: string, input: { name: string }) {
  const name = input.name.trim()
  return db.transaction().execute(async (trx) => {
    const partner = await repo.insertPartner(trx, name).catch((err: { code?: string }) => {
      // partner_name_uq (lower(name)): a race between two creations ends here too.
      if (err.code === '23505') throw new PartnerNameTaken(name)
      throw err
    })
    await recordAudit(trx, { action: 'partner.created', actorId, target: { type: 'partner', id: partner.id }, details: { name } })
    return { ...partner, users: 0 }
  })
}

export async function listPartners (db: Kysely<DB>, query: PageQuery) {
  const rows = await repo.listPartners(db, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  return pageOf(rows.map((r) => ({ ...r, users: Number(r.users ?? 0) })), query.limit)
}

/** Used by the admin user update: a user can only be put in a partner that exists. */
export async function partnerExists (db: Kysely<DB>, id: string): Promise<boolean> {
  return repo.partnerExists(db, id)
}

/** Makes a key and answers it once (`key`); only its hash is kept. */
export async function createPartnerKey (db: Kysely<DB>, actorId: string, partnerId: string, input: { name: string, scopes: PartnerScope[], expiresAt?: string }) {
  const now = Date.now()
  const expiresAt = input.expiresAt ? new Date(input.expiresAt) : new Date(now + maxKeyLifetimeMs)
  if (expiresAt.getTime() <= now) throw new BadKeyExpiry('must be in the future')
  // A minute of slack for a client that computed "one year from now" a moment before we did.
  if (expiresAt.getTime() > now + maxKeyLifetimeMs + 60_000) throw new BadKeyExpiry('must be at most one year ahead')
  const { key, prefix, hash } = newPartnerKey()
  return db.transaction().execute(async (trx) => {
    if (!(await repo.partnerExists(trx, partnerId))) throw new PartnerNotFound(partnerId)
    const row = await repo.insertPartnerKey(trx, { partner_id: partnerId, name: input.name.trim(), prefix, key_hash: hash, scopes: [...new Set(input.scopes)], expires_at: expiresAt })
    await recordAudit(trx, { action: 'partner.key_created', actorId, target: { type: 'partner_api_key', id: row.id }, details: { partnerId, prefix, scopes: row.scopes, expiresAt: expiresAt.toISOString() } })
    return { row, key }
  })
}

export async function listPartnerKeys (db: Kysely<DB>, partnerId: string, query: PageQuery) {
  const rows = await repo.listPartnerKeys(db, partnerId, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  // An empty page is either a partner without keys (or past its last one) or no partner at all.
  if (rows.length === 0 && !(await repo.partnerExists(db, partnerId))) throw new PartnerNotFound(partnerId)
  return pageOf(rows, query.limit)
}

/** Revokes a key at once; revoking it again changes nothing (and is not audited twice). */
export async function revokePartnerKey (db: Kysely<DB>, actorId: string, partnerId: string, keyId: string) {
  await db.transaction().execute(async (trx) => {
    const revoked = await repo.revokePartnerKey(trx, partnerId, keyId)
    if (!revoked) {
      if (!(await repo.findPartnerKey(trx, partnerId, keyId))) throw new PartnerKeyNotFound(keyId)
      return
    }
    await recordAudit(trx, { action: 'partner.key_revoked', actorId, target: { type: 'partner_api_key', id: keyId }, details: { partnerId, prefix: revoked.prefix } })
  })
}

export interface PartnerKeyIdentity { keyId: string, partnerId: string, scopes: readonly string[] }

/**
 * The key presented in X-Api-Key: known (by its hash), not revoked, not expired. Marks it used, at most
 * once a minute. Scopes are the caller's to check.
 */
export async function authenticatePartnerKey (db: Kysely<DB>, presented: string | undefined): Promise<PartnerKeyIdentity> {
  if (!presented) throw new PartnerKeyMissing()
  if (!looksLikePartnerKey(presented)) throw new PartnerKeyInvalid()
  const key = await repo.findKeyByHash(db, hashToId(presented))
  if (!key) throw new PartnerKeyInvalid()
  if (key.revoked_at !== null) throw new PartnerKeyRevoked()
  if (key.expires_at.getTime() <= Date.now()) throw new PartnerKeyExpired()
  if (key.last_used_at === null || key.last_used_at.getTime() < Date.now() - touchEverySeconds * 1000) {
    await repo.touchPartnerKey(db, key.id, touchEverySeconds)
  }
  return { keyId: key.id, partnerId: key.partner_id, scopes: key.scopes }
}

export async function listPartnerUsers (db: Kysely<DB>, partnerId: string, query: PageQuery) {
  const rows = await repo.listPartnerUsers(db, partnerId, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  return pageOf(rows, query.limit)
}

/** `YYYY-MM` (UTC) → [first instant, first instant of the next month); this month when absent. */
export function monthRange (month: string | undefined, now = new Date()) {
  const [year, index] = month ? month.split('-').map(Number) as [number, number] : [now.getUTCFullYear(), now.getUTCMonth() + 1]
  // setUTCFullYear, not Date.UTC: the latter reads years 0–99 as 1900–1999.
  const first = (y: number, m: number) => new Date(new Date(0).setUTCFullYear(y, m, 1))
  return { month: `${String(year).padStart(4, '0')}-${String(index).padStart(2, '0')}`, from: first(year, index - 1), to: first(year, index) }
}

export async function partnerUsage (db: Kysely<DB>, partnerId: string, query: PageQuery & { month?: string, user?: string }) {
  const range = monthRange(query.month)
  const rows = await repo.partnerUsage(db, partnerId, range, query.user ?? null, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  const totals = rows[0]!
  if (query.user && Number(totals.matched) === 0) throw new PartnerUserNotFound(query.user)
  const users = rows.flatMap((r) => r.id === null
    ? []
    : [{ id: r.id, created_at: r.created_at!, email: r.email!, name: r.name!, containers: Number(r.containers), seconds: Number(r.seconds) }])
  const page = pageOf(users, query.limit)
  const seconds = Number(totals.total_seconds)
  return {
    ...range,
    totals: { users: Number(totals.total_users), containers: Number(totals.total_containers), seconds, hours: hours(seconds) },
    items: page.items.map((u) => ({ ...u, hours: hours(u.seconds) })),
    nextCursor: page.nextCursor
  }
}

export async function listPartnerContainers (db: Kysely<DB>, partnerId: string, query: PageQuery & { user?: string }) {
  const rows = await repo.partnerContainers(db, partnerId, query.user ?? null, { limit: query.limit + 1, before: keysetOf(query.cursor) })
  if (query.user && rows.length === 0) throw new PartnerUserNotFound(query.user)
  const containers = rows.flatMap((r) => r.id === null
    ? []
    : [{
        id: r.id,
        created_at: r.created_at!,
        user: { id: r.user_id, email: r.user_email },
        app: r.app_id!,
        region: r.region_code!,
        state: r.state!,
        startedAt: r.assigned_at ?? r.running_at ?? r.created_at!
      }])
  return pageOf(containers, query.limit)
}
