import type { Kysely, Transaction, Updateable } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { AccountTable, DB, EmailTokenPurpose, Role } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

export function findAccountByEmail (db: Db, email: string) {
  return db.selectFrom('account').selectAll()
    .where(sql<string>`lower(email)`, '=', email.toLowerCase())
    .where('deleted_at', 'is', null)
    .executeTakeFirst()
}

export function findAccountById (db: Db, id: string) {
  return db.selectFrom('account').selectAll().where('id', '=', id).where('deleted_at', 'is', null).executeTakeFirst()
}

export function findAccountByGoogleSubject (db: Db, subject: string) {
  return db.selectFrom('account').selectAll().where('google_subject', '=', subject).where('deleted_at', 'is', null).executeTakeFirst()
}

export function insertAccount (db: Db, values: { email: string, name: string, password_hash: string | null, role?: Role, email_verified_at?: Date | null, google_subject?: string | null, sign_up_reason?: string | null, referral_code?: string | null }) {
  return db.insertInto('account').values(values).returningAll().executeTakeFirstOrThrow()
}

export function updateAccount (db: Db, id: string, changes: Updateable<AccountTable>) {
  return db.updateTable('account').set({ ...changes, updated_at: sql`now()` }).where('id', '=', id).where('deleted_at', 'is', null)
    .returningAll().executeTakeFirst()
}

export function insertSession (db: Db, values: { account_id: string, ip: string | null, user_agent: string | null, expires_at: Date }) {
  return db.insertInto('session').values(values).returningAll().executeTakeFirstOrThrow()
}

export function insertRefreshToken (db: Db, values: { token_hash: string, session_id: string, expires_at: Date }) {
  return db.insertInto('refresh_token').values(values).execute()
}

/** The refresh token with its session and account, locked: two refreshes with one token take turns. */
export function lockRefreshToken (trx: Transaction<DB>, tokenHash: string) {
  return trx.selectFrom('refresh_token')
    .innerJoin('session', 'session.id', 'refresh_token.session_id')
    .innerJoin('account', 'account.id', 'session.account_id')
    .select([
      'refresh_token.token_hash', 'refresh_token.used_at', 'refresh_token.expires_at as token_expires_at',
      'session.id as session_id', 'session.revoked_at', 'session.expires_at as session_expires_at',
      'account.id as account_id', 'account.disabled_at', 'account.deleted_at'
    ])
    .where('refresh_token.token_hash', '=', tokenHash)
    .forUpdate('refresh_token')
    .executeTakeFirst()
}

export function markRefreshTokenUsed (db: Db, tokenHash: string) {
  return db.updateTable('refresh_token').set({ used_at: sql`now()` }).where('token_hash', '=', tokenHash).execute()
}

export function touchSession (db: Db, id: string) {
  return db.updateTable('session').set({ last_used_at: sql`now()` }).where('id', '=', id).execute()
}

/** Revokes sessions and returns the ids actually revoked (for the access-token revocation list). */
export async function revokeSessions (db: Db, where: { accountId: string, sessionId?: string, exceptSessionId?: string }, reason: string): Promise<string[]> {
  const rows = await db.updateTable('session')
    .set({ revoked_at: sql`now()`, revoked_reason: reason })
    .where('account_id', '=', where.accountId)
    .where('revoked_at', 'is', null)
    .$if(where.sessionId !== undefined, (q) => q.where('id', '=', where.sessionId!))
    .$if(where.exceptSessionId !== undefined, (q) => q.where('id', '!=', where.exceptSessionId!))
    .returning('id')
    .execute()
  return rows.map((r) => r.id)
}

export function findSession (db: Db, id: string) {
  return db.selectFrom('session').selectAll().where('id', '=', id).executeTakeFirst()
}

export function listActiveSessions (db: Db, accountId: string) {
  return db.selectFrom('session').selectAll()
    .where('account_id', '=', accountId)
    .where('revoked_at', 'is', null)
    .where('expires_at', '>', sql<Date>`now()`)
    .orderBy('created_at', 'desc')
    .execute()
}

export function insertEmailToken (db: Db, values: { token_hash: string, purpose: EmailTokenPurpose, account_id: string | null, email: string, expires_at: Date }) {
  return db.insertInto('email_token').values(values).execute()
}

export function lockEmailToken (trx: Transaction<DB>, tokenHash: string) {
  return trx.selectFrom('email_token').selectAll().where('token_hash', '=', tokenHash).forUpdate().executeTakeFirst()
}

export function markEmailTokenUsed (db: Db, tokenHash: string) {
  return db.updateTable('email_token').set({ used_at: sql`now()` }).where('token_hash', '=', tokenHash).execute()
}

/** Spends every unused mailed token of an account (verification, address change, reset links already sent). */
export function voidEmailTokens (db: Db, accountId: string) {
  return db.updateTable('email_token').set({ used_at: sql`now()` }).where('account_id', '=', accountId).where('used_at', 'is', null).execute()
}

/** The account, locked until the transaction ends: credential changes and new sessions take turns. */
export function lockAccount (trx: Transaction<DB>, id: string) {
  return trx.selectFrom('account').selectAll().where('id', '=', id).where('deleted_at', 'is', null).forUpdate().executeTakeFirst()
}

/** Newest first, keyset-paginated on (created_at, id). */
export function listAccounts (db: Db, page: { limit: number, before: { createdAt: Date, id: string } | null, q: string | null, role: Role | null }) {
  return db.selectFrom('account').selectAll()
    .where('deleted_at', 'is', null)
    .$if(page.q !== null, (q) => q.where((eb) => eb.or([
      eb(sql`lower(email)`, 'like', `%${escapeLike(page.q!.toLowerCase())}%`),
      eb(sql`lower(name)`, 'like', `%${escapeLike(page.q!.toLowerCase())}%`)
    ])))
    .$if(page.role !== null, (q) => q.where('role', '=', page.role!))
    .$if(page.before !== null, (q) => q.where((eb) => eb.or([
      eb('created_at', '<', page.before!.createdAt),
      eb.and([eb('created_at', '=', page.before!.createdAt), eb('id', '<', page.before!.id)])
    ])))
    .orderBy('created_at', 'desc')
    .orderBy('id', 'desc')
    .limit(page.limit)
    .execute()
}

function escapeLike (text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`)
}

export function deleteAccountRow (db: Db, id: string) {
  return db.deleteFrom('account').where('id', '=', id).where('deleted_at', 'is not', null).execute()
}
