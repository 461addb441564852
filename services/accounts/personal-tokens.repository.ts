import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>
type Keyset = { createdAt: Date, id: string } | null

/** `(created_at, id) < before`: the rows after a newest-first keyset cursor (a row comparison the index serves). */
const olderThan = (before: NonNullable<Keyset>) =>
  sql<boolean>`(personal_access_token.created_at, personal_access_token.id) < (${before.createdAt}, ${before.id})`

export function insertToken (db: Db, values: { account_id: string, name: string, prefix: string, token_hash: string, scopes: string[], read_only: boolean, expires_at: Date }) {
  return db.insertInto('personal_access_token').values(values).returningAll().executeTakeFirstOrThrow()
}

/** Tokens of the account that still work (neither revoked nor expired at `now`). */
export async function countLiveTokens (db: Db, accountId: string, now: Date): Promise<number> {
  const row = await db.selectFrom('personal_access_token').select((eb) => eb.fn.countAll<string>().as('n'))
    .where('account_id', '=', accountId).where('revoked_at', 'is', null).where('expires_at', '>', now)
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

/** Newest first, revoked and expired included; one account's (`accountId`) or everyone's. */
export function listTokens (db: Db, where: { accountId: string | null }, page: { limit: number, before: Keyset }) {
  return db.selectFrom('personal_access_token').selectAll()
    .$if(where.accountId !== null, (q) => q.where('account_id', '=', where.accountId!))
    .$if(page.before !== null, (q) => q.where(olderThan(page.before!)))
    .orderBy('created_at', 'desc').orderBy('id', 'desc')
    .limit(page.limit)
    .execute()
}

export function findToken (db: Db, id: string, accountId: string | null) {
  return db.selectFrom('personal_access_token').select(['id', 'account_id', 'prefix', 'revoked_at'])
    .where('id', '=', id)
    .$if(accountId !== null, (q) => q.where('account_id', '=', accountId!))
    .executeTakeFirst()
}

/** Revokes a token not revoked yet (one account's when `accountId` is given); returns it only when this call revoked it. */
export function revokeToken (db: Db, id: string, accountId: string | null, now: Date) {
  return db.updateTable('personal_access_token').set({ revoked_at: now })
    .where('id', '=', id).where('revoked_at', 'is', null)
    .$if(accountId !== null, (q) => q.where('account_id', '=', accountId!))
    .returning(['id', 'account_id', 'prefix', 'name']).executeTakeFirst()
}

/** Revokes every token of an account (disabled); returns their ids. */
export async function revokeAccountTokens (db: Db, accountId: string, now: Date): Promise<string[]> {
  const rows = await db.updateTable('personal_access_token').set({ revoked_at: now })
    .where('account_id', '=', accountId).where('revoked_at', 'is', null)
    .returning('id').execute()
  return rows.map((r) => r.id)
}

/** The token with this hash (personal_access_token_hash_uq): a lookup by the hash of a secret reveals nothing by its timing. */
export function findTokenByHash (db: Db, hash: string) {
  return db.selectFrom('personal_access_token')
    .select(['id', 'account_id', 'scopes', 'read_only', 'expires_at', 'revoked_at', 'last_used_at'])
    .where('token_hash', '=', hash).executeTakeFirst()
}

/**
 * Sets last_used_at to `now` unless a use within `minSeconds` did; moves use_audited_at to `now` when the
 * last audited use is `auditSeconds` old or more. Answers nothing when no row changed, else whether this use
 * is one to audit. The old use_audited_at comes from a locked read in the same statement (RETURNING shows
 * new values only).
 */
export async function touchToken (db: Db, id: string, now: Date, minSeconds: number, auditSeconds: number) {
  const { rows } = await sql<{ audit: boolean }>`
    update personal_access_token t
       set last_used_at = ${now},
           use_audited_at = case when old.audited is null or old.audited <= ${now}::timestamptz - make_interval(secs => ${auditSeconds})
                                 then ${now} else old.audited end
      from (select id, use_audited_at as audited from personal_access_token where id = ${id} for update) old
     where t.id = old.id and t.revoked_at is null
       and (t.last_used_at is null or t.last_used_at <= ${now}::timestamptz - make_interval(secs => ${minSeconds}))
    returning (old.audited is null or old.audited <= ${now}::timestamptz - make_interval(secs => ${auditSeconds})) as audit`.execute(db)
  return rows[0]
}
