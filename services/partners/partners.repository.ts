import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { ContainerState, DB, PartnerScope } from '../../db/types.js'
import { usageInRange } from '../usage/usage.service.js'

type Db = Kysely<DB> | Transaction<DB>
type Keyset = { createdAt: Date, id: string } | null

/** `(created_at, id) < before`: the rows after a newest-first keyset cursor (a row comparison the index serves). */
function olderThan (column: { createdAt: string, id: string }, before: NonNullable<Keyset>) {
  return sql<boolean>`(${sql.ref(column.createdAt)}, ${sql.ref(column.id)}) < (${before.createdAt}, ${before.id})`
}

// The states of a container someone holds now (containers.repository's liveStates; the partial index
// container_live_user_idx has the same list).
type RunningState = Extract<ContainerState, 'creating' | 'starting' | 'available' | 'in_use'>
const runningStates: RunningState[] = ['creating', 'starting', 'available', 'in_use']

export function insertPartner (db: Db, name: string) {
  return db.insertInto('partner').values({ name }).returningAll().executeTakeFirstOrThrow()
}

export async function partnerExists (db: Db, id: string): Promise<boolean> {
  return (await db.selectFrom('partner').select('id').where('id', '=', id).executeTakeFirst()) !== undefined
}

/** Newest first, each with its number of (not deleted) users: one query, the counts from account_partner_idx. */
export function listPartners (db: Db, page: { limit: number, before: Keyset }) {
  return db.selectFrom('partner')
    .select((eb) => [
      'partner.id', 'partner.name', 'partner.created_at',
      eb.selectFrom('account').select(eb.fn.countAll<number>().as('n'))
        .whereRef('account.partner_id', '=', 'partner.id').where('account.deleted_at', 'is', null).as('users')
    ])
    .$if(page.before !== null, (q) => q.where(olderThan({ createdAt: 'partner.created_at', id: 'partner.id' }, page.before!)))
    .orderBy('partner.created_at', 'desc').orderBy('partner.id', 'desc')
    .limit(page.limit)
    .execute()
}

export function insertPartnerKey (db: Db, values: { partner_id: string, name: string, prefix: string, key_hash: string, scopes: PartnerScope[], expires_at: Date }) {
  return db.insertInto('partner_api_key').values(values).returningAll().executeTakeFirstOrThrow()
}

export function listPartnerKeys (db: Db, partnerId: string, page: { limit: number, before: Keyset }) {
  return db.selectFrom('partner_api_key').selectAll()
    .where('partner_id', '=', partnerId)
    .$if(page.before !== null, (q) => q.where(olderThan({ createdAt: 'created_at', id: 'id' }, page.before!)))
    .orderBy('created_at', 'desc').orderBy('id', 'desc')
    .limit(page.limit)
    .execute()
}

/** Revokes a key not revoked yet; returns it only when this call revoked it. */
export function revokePartnerKey (db: Db, partnerId: string, keyId: string) {
  return db.updateTable('partner_api_key').set({ revoked_at: sql`now()` })
    .where('id', '=', keyId).where('partner_id', '=', partnerId).where('revoked_at', 'is', null)
    .returning(['id', 'prefix']).executeTakeFirst()
}

export function findPartnerKey (db: Db, partnerId: string, keyId: string) {
  return db.selectFrom('partner_api_key').select(['id', 'revoked_at']).where('id', '=', keyId).where('partner_id', '=', partnerId).executeTakeFirst()
}

/** The key with this hash (partner_api_key_hash_uq): a lookup by the hash of a secret reveals nothing by its timing. */
export function findKeyByHash (db: Db, hash: string) {
  return db.selectFrom('partner_api_key').select(['id', 'partner_id', 'scopes', 'expires_at', 'revoked_at', 'last_used_at'])
    .where('key_hash', '=', hash).executeTakeFirst()
}

/** Sets last_used_at unless another request did within `minSeconds`: reads do not write on every call. */
export function touchPartnerKey (db: Db, id: string, minSeconds: number) {
  return db.updateTable('partner_api_key').set({ last_used_at: sql`now()` })
    .where('id', '=', id)
    .where((eb) => eb.or([eb('last_used_at', 'is', null), eb('last_used_at', '<', sql<Date>`now() - make_interval(secs => ${minSeconds})`)]))
    .execute()
}

/** A partner's users, newest first (account_partner_idx). */
export function listPartnerUsers (db: Db, partnerId: string, page: { limit: number, before: Keyset }) {
  return db.selectFrom('account').select(['id', 'email', 'name', 'created_at'])
    .where('partner_id', '=', partnerId).where('deleted_at', 'is', null)
    .$if(page.before !== null, (q) => q.where(olderThan({ createdAt: 'created_at', id: 'id' }, page.before!)))
    .orderBy('created_at', 'desc').orderBy('id', 'desc')
    .limit(page.limit)
    .execute()
}

/**
 * A month of container time of a partner's users, in one query: per user (those with usage, newest user
 * first, one page) and the totals over every page. Always one row: the totals, with the page's user
 * columns null when the page is empty. `matched` counts the users considered (with `user`: 0 when the user
 * is not the partner's).
 */
export function partnerUsage (db: Db, partnerId: string, range: { from: Date, to: Date }, user: string | null, page: { limit: number, before: Keyset }) {
  return db
    .with('per_user', (qb) => qb.selectFrom('account')
      // The usage reports' one definition of a period's usage (services/usage).
      .leftJoin(usageInRange(db, range).as('usage'), 'usage.user_id', 'account.id')
      .select((eb) => [
        'account.id', 'account.email', 'account.name', 'account.created_at',
        sql<number>`coalesce(sum(usage.seconds), 0)::bigint`.as('seconds'),
        eb.fn.count<number>('usage.container_id').as('containers')
      ])
      .where('account.partner_id', '=', partnerId).where('account.deleted_at', 'is', null)
      .$if(user !== null, (q) => q.where('account.id', '=', user!))
      .groupBy('account.id'))
    .with('totals', (qb) => qb.selectFrom('per_user').select([
      sql<number>`count(*)`.as('matched'),
      sql<number>`count(*) filter (where containers > 0)`.as('users'),
      sql<number>`coalesce(sum(containers), 0)::bigint`.as('containers'),
      sql<number>`coalesce(sum(seconds), 0)::bigint`.as('seconds')
    ]))
    .with('page', (qb) => qb.selectFrom('per_user').selectAll()
      .where('containers', '>', 0)
      .$if(page.before !== null, (q) => q.where(olderThan({ createdAt: 'created_at', id: 'id' }, page.before!)))
      .orderBy('created_at', 'desc').orderBy('id', 'desc')
      .limit(page.limit))
    .selectFrom('totals')
    .leftJoin('page', (j) => j.on(sql<boolean>`true`))
    .select([
      'totals.matched', 'totals.users as total_users', 'totals.containers as total_containers', 'totals.seconds as total_seconds',
      'page.id', 'page.email', 'page.name', 'page.created_at', 'page.containers', 'page.seconds'
    ])
    .orderBy('page.created_at', 'desc').orderBy('page.id', 'desc')
    .execute()
}

/**
 * The running containers of a partner's users, newest first, in one query starting from the partner's
 * accounts (account_partner_idx, then container_live_user_idx). With `user`, the account is kept even
 * without containers (one row, container columns null), so "not the partner's user" is no row at all.
 */
export function partnerContainers (db: Db, partnerId: string, user: string | null, page: { limit: number, before: Keyset }) {
  return db.selectFrom('account')
    .leftJoin('container', (j) => j.onRef('container.user_id', '=', 'account.id').on('container.state', 'in', runningStates)
      .$call((on) => page.before !== null ? on.on(olderThan({ createdAt: 'container.created_at', id: 'container.id' }, page.before)) : on))
    .select([
      'account.id as user_id', 'account.email as user_email',
      'container.id', 'container.app_id', 'container.region_code', 'container.state',
      'container.assigned_at', 'container.running_at', 'container.created_at'
    ])
    .$narrowType<{ state: RunningState | null }>()
    .where('account.partner_id', '=', partnerId).where('account.deleted_at', 'is', null)
    .$if(user !== null, (q) => q.where('account.id', '=', user!))
    .$if(user === null, (q) => q.where('container.id', 'is not', null))
    .orderBy('container.created_at', 'desc').orderBy('container.id', 'desc')
    .limit(page.limit)
    .execute()
}
