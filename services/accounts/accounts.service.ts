import type { Kysely, Transaction, Updateable } from 'kysely'
import type { Account, AccountTable, DB, EmailTokenPurpose, Role, Session } from '../../db/types.js'
import { sendMail } from '../mail/mail.service.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import { UnknownPartner } from '../partners/partners.errors.js'
import { partnerExists } from '../partners/partners.service.js'
import { recordAudit, requestContext, type RequestContext } from '../audit/audit.service.js'
import type { Clock } from '../clock.js'
import type { JobQueue } from '../queue.js'
import {
  AccountGone, CannotDemoteSelf, CurrentPasswordRequired, EmailTaken, InvalidCredentials, InvalidRefreshToken,
  NameNotAllowed, ReauthenticationRequired, RefreshTokenReused, SessionNotFound, SessionRequired, TokenExpired, TokenInvalid, TokenUsed,
  TooManyFailures, UserNotFound, WeakPassword, WrongCurrentPassword
} from './accounts.errors.js'
import * as repo from './accounts.repository.js'
import { isProfane } from './names.js'
import { scopesFor } from './roles.js'
import { revokeAccountTokens } from './personal-tokens.service.js'
import { hashToId, newSecret } from '../hashing.js'
import { hashPassword, passwordProblem, verifyPassword } from './secrets.js'

/** Access tokens of revoked sessions stop working at once, not when they expire. */
export interface SessionRevocations {
  revoke (sessionIds: readonly string[]): Promise<void>
}

/** Counts attempts per key in a sliding window (password checks per address, mails per address). */
export interface FailureThrottle {
  /**
   * Counts an attempt at `key`, atomically, before the work it guards: 0 when it may go ahead, else the
   * seconds to wait (`max` attempts were already made in the last `windowSeconds`; this one is not counted).
   */
  attempt (key: string, max: number, windowSeconds: number): Promise<number>
  /** Forgets the attempts at `key` (a right password). */
  clear (key: string): Promise<void>
}

/** Recently read accounts, for the hot `getMe` path; every change drops the entry in every process. */
export interface AccountCache {
  get (id: string): Account | undefined
  set (account: Account): void
  invalidate (id: string): Promise<void>
}

export interface AccountDeps {
  queue: JobQueue
  clock: Clock
  cache: AccountCache
  signAccessToken (claims: { sub: string, role: Role, scopes: string[], sid: string }): string
  revocations: SessionRevocations
  throttle: FailureThrottle
  settings: {
    appUrl: string
    accessTokenTtl: number
    refreshTokenTtlDays: number
    passwordMinLength: number
    signInMaxFailures: number
    personalTokenMaxTtlDays: number
    personalTokensPerAccount: number
  }
  log: { info (obj: object, msg: string): void, warn (obj: object, msg: string): void }
}

const hour = 3600_000
const failureWindowSeconds = 15 * 60
// Mails one address may be sent per hour by public operations (sign-up, reset): nobody's inbox is flooded.
const mailsPerAddressPerHour = 3

/** True when another public mail may go to `email` this hour (counts it). */
async function mayMail (deps: AccountDeps, kind: string, email: string): Promise<boolean> {
  return await deps.throttle.attempt(`mail:${kind}:${email.toLowerCase()}`, mailsPerAddressPerHour, 3600) === 0
}

/**
 * Counts a password check for the account at `email` before it is made: sign-in, and a current password
 * given to change the password or address, share one limit per address (SIGN_IN_MAX_FAILURES per 15 min).
 */
async function countPasswordCheck (deps: AccountDeps, email: string): Promise<string> {
  const key = `signin:${email.toLowerCase()}`
  const wait = await deps.throttle.attempt(key, deps.settings.signInMaxFailures, failureWindowSeconds)
  if (wait > 0) throw new TooManyFailures(wait)
  return key
}

async function checkPassword (deps: AccountDeps, password: string, field: string, email?: string) {
  const problem = await passwordProblem(password, deps.settings.passwordMinLength, email)
  if (problem) throw new WeakPassword(field, problem)
}

async function checkName (name: string, field = '/body/name') {
  if (await isProfane(name)) throw new NameNotAllowed(field)
}

async function mailToken (db: Kysely<DB>, deps: AccountDeps, purpose: EmailTokenPurpose, account: { id: string | null, email: string }, ttlMs: number) {
  const token = newSecret()
  await repo.insertEmailToken(db, { token_hash: hashToId(token), purpose, account_id: account.id, email: account.email, expires_at: new Date(Date.now() + ttlMs) })
  return token
}

const link = (deps: AccountDeps, path: string, token: string) => `${deps.settings.appUrl}${path}?token=${encodeURIComponent(token)}`

async function mailExistingOwner (db: Kysely<DB>, deps: AccountDeps, existing: Account) {
  if (!(await mayMail(deps, 'sign-up', existing.email))) return
  await sendMail(deps.queue, { to: existing.email, template: 'account-exists', data: { name: existing.name, signInLink: `${deps.settings.appUrl}/sign-in`, resetLink: `${deps.settings.appUrl}/password-reset` } })
  await recordAudit(db, { action: 'account.sign_up_existing', actorId: null, target: { type: 'account', id: existing.id } })
}

/**
 * Sign-up. The answer never says whether the address had an account: an existing owner is mailed instead.
 * The password is hashed either way so both paths take the same time.
 */
export async function signUp (db: Kysely<DB>, deps: AccountDeps, input: { email: string, password: string, name: string, reason?: string | undefined, referralCode?: string | undefined }) {
  await checkName(input.name)
  await checkPassword(deps, input.password, '/body/password', input.email)
  const passwordHash = await hashPassword(input.password)
  const accepted = { email: input.email, message: `We sent a verification link to ${input.email}.` }
  const existing = await repo.findAccountByEmail(db, input.email)
  if (existing) {
    await mailExistingOwner(db, deps, existing)
    return accepted
  }
  let created: { token: string }
  try {
    created = await db.transaction().execute(async (trx) => {
      const account = await repo.insertAccount(trx, {
        email: input.email, name: input.name, password_hash: passwordHash, sign_up_reason: input.reason?.trim() ?? null, referral_code: input.referralCode ?? null
      })
      await recordAudit(trx, { action: 'account.sign_up', actorId: account.id, target: { type: 'account', id: account.id } })
      return { token: await mailToken(trx, deps, 'verify_email', account, 24 * hour) }
    })
  } catch (err) {
    // A simultaneous sign-up took the address between the lookup and the insert: answer as for an existing one.
    if ((err as { constraint?: string }).constraint !== 'account_email_uq') throw err
    const owner = await repo.findAccountByEmail(db, input.email)
    if (owner) await mailExistingOwner(db, deps, owner)
    return accepted
  }
  await sendMail(deps.queue, { to: input.email, template: 'verify-email', data: { name: input.name, link: link(deps, '/verify-email', created.token) } })
  return accepted
}

/** Spends a single-use mailed token of one of `purposes`, inside `trx`. */
export async function spendToken (trx: Parameters<typeof repo.lockEmailToken>[0], token: string, purposes: EmailTokenPurpose[]) {
  const row = await repo.lockEmailToken(trx, hashToId(token))
  if (!row || !purposes.includes(row.purpose)) throw new TokenInvalid()
  if (row.used_at) throw new TokenUsed()
  if (row.expires_at.getTime() < Date.now()) throw new TokenExpired()
  await repo.markEmailTokenUsed(trx, row.token_hash)
  return row
}

/** Verifies the address of a new account, or switches an account to its new, now verified, address. */
export async function verifyEmail (db: Kysely<DB>, deps: AccountDeps, token: string): Promise<Account> {
  const { account, welcome } = await db.transaction().execute(async (trx) => {
    const row = await spendToken(trx, token, ['verify_email', 'change_email'])
    const current = row.account_id ? await repo.findAccountById(trx, row.account_id) : undefined
    if (!current) throw new TokenInvalid()
    if (row.purpose === 'verify_email') {
      const updated = await repo.updateAccount(trx, current.id, { email_verified_at: current.email_verified_at ?? new Date() })
      return { account: updated!, welcome: current.email_verified_at === null }
    }
    const owner = await repo.findAccountByEmail(trx, row.email)
    if (owner && owner.id !== current.id) throw new EmailTaken()
    const updated = await repo.updateAccount(trx, current.id, { email: row.email, pending_email: null, email_verified_at: new Date() })
    await recordAudit(trx, { action: 'account.email_changed', actorId: current.id, target: { type: 'account', id: current.id }, details: { from: current.email, to: row.email } })
    return { account: updated!, welcome: false }
  })
  await deps.cache.invalidate(account.id)
  if (welcome) await sendMail(deps.queue, { to: account.email, template: 'welcome', data: { name: account.name, link: deps.settings.appUrl } })
  return account
}

export const passwordResetJob = { family: 'accounts', name: 'requestPasswordReset' } as const
/** `ctx`: the request that asked, for the audit row the job writes (it runs inside that context). */
export interface PasswordResetPayload { email: string, ctx: RequestContext }

/**
 * Always accepted, and the answer takes the same time whether the address has an account: the request only
 * queues a job (the same one, the same work); the job looks the address up and mails a reset link (1 h) only
 * when it has an enabled account.
 */
export async function requestPasswordReset (deps: Pick<AccountDeps, 'queue'>, email: string) {
  await deps.queue.enqueue(passwordResetJob, { email, ctx: requestContext() } satisfies PasswordResetPayload, { retries: 3 })
  return { email, message: `If ${email} has an account, we sent it a link to choose a new password.` }
}

/** The job behind requestPasswordReset (run inside the asking request's context: createAccountJobs). */
export async function mailPasswordReset (db: Kysely<DB>, deps: AccountDeps, email: string) {
  const account = await repo.findAccountByEmail(db, email)
  if (!account || account.disabled_at || !(await mayMail(deps, 'reset', account.email))) return { mailed: false }
  const token = await mailToken(db, deps, 'reset_password', account, hour)
  await sendMail(deps.queue, { to: account.email, template: 'password-reset', data: { name: account.name, link: link(deps, '/password-reset/confirm', token) } })
  await recordAudit(db, { action: 'account.password_reset_requested', actorId: null, target: { type: 'account', id: account.id } })
  return { mailed: true }
}

/** Sets the password from a reset link and signs the account out everywhere. */
export async function confirmPasswordReset (db: Kysely<DB>, deps: AccountDeps, input: { token: string, password: string }) {
  const passwordHash = await hashPassword(input.password)
  const revoked = await db.transaction().execute(async (trx) => {
    const row = await spendToken(trx, input.token, ['reset_password'])
    const account = row.account_id ? await repo.findAccountById(trx, row.account_id) : undefined
    if (!account) throw new TokenInvalid()
    await checkPassword(deps, input.password, '/body/password', account.email)
    // The link proved the mailbox: the address counts as verified from now on.
    await repo.updateAccount(trx, account.id, { password_hash: passwordHash, email_verified_at: account.email_verified_at ?? new Date() })
    await recordAudit(trx, { action: 'account.password_reset', actorId: account.id, target: { type: 'account', id: account.id } })
    return { accountId: account.id, revoked: await repo.revokeSessions(trx, { accountId: account.id }, 'password_reset') }
  })
  await deps.cache.invalidate(revoked.accountId)
  await deps.revocations.revoke(revoked.revoked)
}

export interface TokenPair {
  tokenType: 'Bearer'
  accessToken: string
  expiresIn: number
  refreshToken: string
  refreshExpiresIn: number
  account: Account
}

/**
 * Opens a session for an account: a refresh token (stored hashed) and an access token naming the session.
 * `verifiedPasswordHash`: the sign-in checked this password; the session opens only if it is still the
 * account's (a credential change that landed during the check wins: see linkIdentity).
 */
export async function openSession (db: Kysely<DB>, deps: AccountDeps, account: Account, verifiedPasswordHash?: string): Promise<TokenPair> {
  const ctx = requestContext()
  const ttlMs = deps.settings.refreshTokenTtlDays * 24 * hour
  const refreshToken = newSecret()
  const session = await db.transaction().execute(async (trx) => {
    if (verifiedPasswordHash !== undefined) {
      const current = await repo.lockAccount(trx, account.id)
      if (!current || current.disabled_at || current.password_hash !== verifiedPasswordHash) throw new InvalidCredentials()
    }
    const session = await repo.insertSession(trx, { account_id: account.id, ip: ctx.ip, user_agent: ctx.userAgent, expires_at: new Date(Date.now() + ttlMs) })
    await repo.insertRefreshToken(trx, { token_hash: hashToId(refreshToken), session_id: session.id, expires_at: session.expires_at })
    await repo.updateAccount(trx, account.id, { last_sign_in_at: new Date() })
    return session
  })
  return {
    tokenType: 'Bearer',
    accessToken: deps.signAccessToken({ sub: account.id, role: account.role, scopes: scopesFor(account.role), sid: session.id }),
    expiresIn: deps.settings.accessTokenTtl,
    refreshToken,
    refreshExpiresIn: Math.floor(ttlMs / 1000),
    account
  }
}

/**
 * Password sign-in. Unknown address and wrong password fail alike, after the same argon2 work. Attempts
 * are counted per address (known or not) before the check, atomically, so however many guesses arrive at
 * once, no more than SIGN_IN_MAX_FAILURES are checked per window; a right password clears the count.
 */
export async function signIn (db: Kysely<DB>, deps: AccountDeps, input: { email: string, password: string }): Promise<TokenPair> {
  const key = await countPasswordCheck(deps, input.email)
  const account = await repo.findAccountByEmail(db, input.email)
  const ok = await verifyPassword(account?.password_hash ?? null, input.password)
  if (!ok || !account || account.disabled_at) {
    await recordAudit(db, { action: 'session.sign_in_failed', actorId: null, target: account ? { type: 'account', id: account.id } : undefined, details: { reason: account?.disabled_at ? 'disabled' : 'credentials' } })
    throw new InvalidCredentials()
  }
  await deps.throttle.clear(key)
  await recordAudit(db, { action: 'session.sign_in', actorId: account.id, target: { type: 'account', id: account.id }, details: { method: 'password' } })
  return openSession(db, deps, account, account.password_hash!)
}

/**
 * Refresh-token rotation: the token is spent and a new pair issued. A spent token presented again means
 * it was copied: the whole session is revoked and the event recorded.
 */
export async function refreshSession (db: Kysely<DB>, deps: AccountDeps, refreshToken: string): Promise<TokenPair> {
  const tokenHash = hashToId(refreshToken)
  const outcome = await db.transaction().execute(async (trx) => {
    const row = await repo.lockRefreshToken(trx, tokenHash)
    if (!row) return { kind: 'invalid' as const }
    if (row.used_at) {
      const revoked = await repo.revokeSessions(trx, { accountId: row.account_id, sessionId: row.session_id }, 'refresh_token_reuse')
      await recordAudit(trx, { action: 'session.refresh_reuse', actorId: null, target: { type: 'session', id: row.session_id }, details: { accountId: row.account_id } })
      return { kind: 'reused' as const, revoked, accountId: row.account_id, sessionId: row.session_id }
    }
    const now = Date.now()
    if (row.revoked_at || row.disabled_at || row.deleted_at || row.token_expires_at.getTime() < now || row.session_expires_at.getTime() < now) {
      return { kind: 'invalid' as const }
    }
    await repo.markRefreshTokenUsed(trx, tokenHash)
    const next = newSecret()
    await repo.insertRefreshToken(trx, { token_hash: hashToId(next), session_id: row.session_id, expires_at: row.session_expires_at })
    await repo.touchSession(trx, row.session_id)
    const account = (await repo.findAccountById(trx, row.account_id))!
    return { kind: 'ok' as const, account, sessionId: row.session_id, next, expiresAt: row.session_expires_at }
  })
  if (outcome.kind === 'invalid') throw new InvalidRefreshToken()
  if (outcome.kind === 'reused') {
    await deps.revocations.revoke(outcome.revoked)
    deps.log.warn({ security: 'refresh_token_reuse', accountId: outcome.accountId, sessionId: outcome.sessionId, ip: requestContext().ip }, 'refresh token reused: session revoked')
    throw new RefreshTokenReused()
  }
  const { account } = outcome
  return {
    tokenType: 'Bearer',
    accessToken: deps.signAccessToken({ sub: account.id, role: account.role, scopes: scopesFor(account.role), sid: outcome.sessionId }),
    expiresIn: deps.settings.accessTokenTtl,
    refreshToken: outcome.next,
    refreshExpiresIn: Math.max(0, Math.floor((outcome.expiresAt.getTime() - Date.now()) / 1000)),
    account
  }
}

export async function signOut (db: Kysely<DB>, deps: AccountDeps, principal: { userId: string, sessionId: string }) {
  const revoked = await repo.revokeSessions(db, { accountId: principal.userId, sessionId: principal.sessionId }, 'sign_out')
  await deps.revocations.revoke(revoked)
  await recordAudit(db, { action: 'session.sign_out', actorId: principal.userId, target: { type: 'session', id: principal.sessionId } })
}

/** The caller's own account: a valid token whose account is gone is no longer a credential (401, not 404). */
export async function getOwnAccount (db: Kysely<DB>, deps: Pick<AccountDeps, 'cache'>, id: string): Promise<Account> {
  const cached = deps.cache.get(id)
  if (cached) return cached
  const account = await repo.findAccountById(db, id)
  if (!account) throw new AccountGone()
  deps.cache.set(account)
  return account
}

export async function getAccount (db: Kysely<DB>, id: string): Promise<Account> {
  const account = await repo.findAccountById(db, id)
  if (!account) throw new UserNotFound(id)
  return account
}

/** How recent a sign-in must be to change the e-mail address without the current password. */
export const reauthenticationMinutes = 5

/**
 * Name at once. A new address (after its verification) or a new password needs proof that the caller is the
 * owner, not only a bearer of the token: the current password (counted against the same limit as sign-in), or,
 * for the address only, a session that signed in within the last few minutes (an account without a password).
 */
export async function updateMe (db: Kysely<DB>, deps: AccountDeps, principal: { userId: string, sessionId: string | null, tokenId: string | null }, input: { name?: string, email?: string, password?: string, currentPassword?: string }) {
  // A personal access token may rename its account, never take it over (issue 23).
  if (principal.sessionId === null) {
    if (input.password !== undefined) throw new SessionRequired('change the password')
    if (input.email !== undefined) throw new SessionRequired('change the e-mail address')
  }
  const account = await repo.findAccountById(db, principal.userId)
  if (!account) throw new AccountGone()
  if (input.name !== undefined) await checkName(input.name)
  const newEmail = input.email !== undefined && input.email.toLowerCase() !== account.email.toLowerCase() ? input.email : undefined
  if (input.currentPassword !== undefined && (input.password !== undefined || newEmail)) {
    const key = await countPasswordCheck(deps, account.email)
    if (!(await verifyPassword(account.password_hash, input.currentPassword))) throw new WrongCurrentPassword()
    await deps.throttle.clear(key)
  } else if (input.password !== undefined) {
    throw new CurrentPasswordRequired()
  } else if (newEmail) {
    const session = principal.sessionId === null ? undefined : await repo.findSession(db, principal.sessionId)
    if (!session || session.created_at.getTime() < deps.clock.now() - reauthenticationMinutes * 60_000) throw new ReauthenticationRequired(reauthenticationMinutes)
  }
  let passwordHash: string | undefined
  if (input.password !== undefined) {
    await checkPassword(deps, input.password, '/body/password', account.email)
    passwordHash = await hashPassword(input.password)
  }

  const { updated, revoked, token } = await db.transaction().execute(async (trx) => {
    const updated = await repo.updateAccount(trx, account.id, {
      ...(input.name !== undefined ? { name: input.name } : {}),
      ...(passwordHash ? { password_hash: passwordHash } : {}),
      ...(newEmail ? { pending_email: newEmail } : {})
    })
    let revoked: string[] = []
    if (passwordHash) {
      revoked = await repo.revokeSessions(trx, { accountId: account.id, ...(principal.sessionId !== null ? { exceptSessionId: principal.sessionId } : {}) }, 'password_change')
      await recordAudit(trx, { action: 'account.password_changed', actorId: account.id, target: { type: 'account', id: account.id } })
    }
    const token = newEmail ? await mailToken(trx, deps, 'change_email', { id: account.id, email: newEmail }, 24 * hour) : null
    return { updated: updated!, revoked, token }
  })
  await deps.cache.invalidate(account.id)
  await deps.revocations.revoke(revoked)
  if (newEmail && token) {
    await sendMail(deps.queue, { to: newEmail, template: 'verify-new-email', data: { name: updated.name, link: link(deps, '/verify-email', token) } })
    await sendMail(deps.queue, { to: account.email, template: 'email-changed', data: { name: updated.name, newEmail, resetLink: `${deps.settings.appUrl}/password-reset` } })
  }
  return updated
}

/**
 * Links an identity a provider vouches for (Google today, any provider later) to the account with its address,
 * inside `trx`. When that account's address was never verified, whoever made it never proved the mailbox: it
 * may be an attacker who signed up with the victim's address before the victim arrived (pre-hijacking). So
 * everything that creator holds is dropped before the provider's user gets in: the password, every session,
 * every mailed link still unused, a pending address change. Returns the sessions to revoke once committed.
 */
export async function linkIdentity (trx: Transaction<DB>, account: Account, link: Updateable<AccountTable>, provider: string): Promise<{ account: Account, revoked: string[] }> {
  const locked = await repo.lockAccount(trx, account.id)
  if (!locked) throw new InvalidCredentials()
  const unverified = locked.email_verified_at === null
  const updated = await repo.updateAccount(trx, locked.id, {
    ...link,
    email_verified_at: locked.email_verified_at ?? new Date(),
    ...(unverified ? { password_hash: null, pending_email: null } : {})
  })
  let revoked: string[] = []
  if (unverified) {
    revoked = await repo.revokeSessions(trx, { accountId: locked.id }, 'unverified_account_claimed')
    await repo.voidEmailTokens(trx, locked.id)
    await recordAudit(trx, {
      action: 'account.unverified_credentials_dropped',
      actorId: locked.id,
      target: { type: 'account', id: locked.id },
      details: { provider, hadPassword: locked.password_hash !== null, sessionsRevoked: revoked.length, pendingEmail: locked.pending_email !== null }
    })
  }
  return { account: updated!, revoked }
}

export const purgeAccountJob = { family: 'accounts', name: 'purgeAccount' } as const

/** Deletes the account for its user at once (signed out, address freed); a job removes what it owns. */
export async function deleteMe (db: Kysely<DB>, deps: AccountDeps, principal: { userId: string }) {
  const revoked = await db.transaction().execute(async (trx) => {
    const account = await repo.findAccountById(trx, principal.userId)
    if (!account) throw new AccountGone()
    await repo.updateAccount(trx, account.id, { deleted_at: new Date(), email: `deleted+${account.id}@invalid`, pending_email: null, google_subject: null, password_hash: null })
    await recordAudit(trx, { action: 'account.deleted', actorId: account.id, target: { type: 'account', id: account.id } })
    const sessions = await repo.revokeSessions(trx, { accountId: account.id }, 'account_deleted')
    return [...sessions, ...await revokeAccountTokens(trx, account.id, new Date(deps.clock.now()))]
  })
  await deps.cache.invalidate(principal.userId)
  await deps.revocations.revoke(revoked)
  return deps.queue.enqueue(purgeAccountJob, { accountId: principal.userId }, { jobId: `purge-account-${principal.userId}`, retries: 5 })
}

export async function listMySessions (db: Kysely<DB>, userId: string): Promise<Session[]> {
  return repo.listActiveSessions(db, userId)
}

export async function revokeMySession (db: Kysely<DB>, deps: AccountDeps, userId: string, sessionId: string) {
  const revoked = await repo.revokeSessions(db, { accountId: userId, sessionId }, 'revoked_by_user')
  if (revoked.length === 0) throw new SessionNotFound(sessionId)
  await deps.revocations.revoke(revoked)
  await recordAudit(db, { action: 'session.revoked', actorId: userId, target: { type: 'session', id: sessionId } })
}

export async function listUsers (db: Kysely<DB>, query: { limit: number, cursor?: string, q?: string, role?: Role }) {
  const rows = await repo.listAccounts(db, { limit: query.limit + 1, before: query.cursor ? decodeKeyset(query.cursor) : null, q: query.q ?? null, role: query.role ?? null })
  return pageOf(rows, query.limit)
}

/**
 * An admin changes a role or disables an account (either signs the account out so new scopes apply), or
 * puts it in a partner's organisation (`partnerId`; null takes it out).
 */
export async function updateUser (db: Kysely<DB>, deps: AccountDeps, actor: { userId: string }, userId: string, input: { role?: Role, disabled?: boolean, partnerId?: string | null }) {
  if (actor.userId === userId && ((input.role !== undefined && input.role !== 'admin') || input.disabled === true)) throw new CannotDemoteSelf()
  const { account, revoked } = await db.transaction().execute(async (trx) => {
    const before = await repo.findAccountById(trx, userId)
    if (!before) throw new UserNotFound(userId)
    if (input.partnerId && input.partnerId !== before.partner_id && !(await partnerExists(trx, input.partnerId))) throw new UnknownPartner(input.partnerId)
    const account = (await repo.updateAccount(trx, userId, {
      ...(input.role !== undefined ? { role: input.role } : {}),
      ...(input.disabled !== undefined ? { disabled_at: input.disabled ? (before.disabled_at ?? new Date()) : null } : {}),
      ...(input.partnerId !== undefined ? { partner_id: input.partnerId } : {})
    }))!
    const target = { actorId: actor.userId, target: { type: 'account', id: userId } }
    let revoked: string[] = []
    if (input.role !== undefined && input.role !== before.role) {
      await recordAudit(trx, { ...target, action: 'user.role_changed', details: { from: before.role, to: input.role } })
      revoked = await repo.revokeSessions(trx, { accountId: userId }, 'role_changed')
    }
    if (input.disabled !== undefined && input.disabled !== (before.disabled_at !== null)) {
      await recordAudit(trx, { ...target, action: input.disabled ? 'user.disabled' : 'user.enabled' })
      // Its sessions and its personal access tokens end (a re-enabled account signs in and makes new tokens).
      if (input.disabled) revoked = [...revoked, ...await repo.revokeSessions(trx, { accountId: userId }, 'disabled'), ...await revokeAccountTokens(trx, userId, new Date(deps.clock.now()))]
    }
    if (input.partnerId !== undefined && input.partnerId !== before.partner_id) {
      await recordAudit(trx, { ...target, action: 'user.partner_changed', details: { from: before.partner_id, to: input.partnerId } })
    }
    return { account, revoked }
  })
  await deps.cache.invalidate(userId)
  await deps.revocations.revoke(revoked)
  return account
}

/** `npm run admin:create -- email`: makes the address an admin, creating the account (no password) if needed. */
export async function ensureAdmin (db: Kysely<DB>, email: string, name: string) {
  return db.transaction().execute(async (trx) => {
    const existing = await repo.findAccountByEmail(trx, email)
    const account = existing
      ? (await repo.updateAccount(trx, existing.id, { role: 'admin' }))!
      : await repo.insertAccount(trx, { email, name, password_hash: null, role: 'admin', email_verified_at: new Date() })
    await recordAudit(trx, { action: 'user.role_changed', actorId: null, target: { type: 'account', id: account.id }, details: { to: 'admin', by: 'admin:create' } })
    return { account, created: !existing }
  })
}
