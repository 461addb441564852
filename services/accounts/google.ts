import type { JWTVerifyGetKey } from 'jose'
import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import { DomainError } from '../errors.js'
import { GoogleEmailUnverified, GoogleNotConfigured, GoogleRejected, InvalidCredentials } from './accounts.errors.js'
import * as repo from './accounts.repository.js'
import { linkIdentity, openSession, type AccountDeps, type TokenPair } from './accounts.service.js'

export interface GoogleSettings {
  clientId: string | null
  clientSecret: string | null
  issuer: string
  tokenUrl: string
  jwksUrl: string
  redirectUris: readonly string[]
}

export interface GoogleIdentity { subject: string, email: string, emailVerified: boolean, name: string | null }

export interface GoogleVerifier {
  fromIdToken (idToken: string): Promise<GoogleIdentity>
  fromCode (input: { code: string, redirectUri: string, codeVerifier?: string }): Promise<GoogleIdentity>
}

/** Verifies Google ID tokens against Google's JWKS (jose caches the keys) and redeems authorization codes. */
export function createGoogleVerifier (settings: GoogleSettings): GoogleVerifier {
  let jwks: JWTVerifyGetKey | undefined
  const configured = () => {
    if (!settings.clientId) throw new GoogleNotConfigured()
    return settings.clientId
  }

  async function fromIdToken (idToken: string): Promise<GoogleIdentity> {
    const audience = configured()
    // jose is loaded on the first Google sign-in, not at start-up.
    const { createRemoteJWKSet, jwtVerify } = await import('jose')
    jwks ??= createRemoteJWKSet(new URL(settings.jwksUrl), { timeoutDuration: 5000 })
    let payload
    try {
      ({ payload } = await jwtVerify(idToken, jwks, { issuer: settings.issuer, audience, algorithms: ['RS256', 'ES256'] }))
    } catch (err) {
      const code = (err as { code?: string }).code
      // A refused connection or a DNS failure fetching the keys arrives as fetch's TypeError: Google is away.
      if (code === 'ERR_JWKS_TIMEOUT' || code === 'ERR_JOSE_GENERIC' || err instanceof TypeError) throw new DomainError('unavailable', 'Google unreachable', 'Google could not be reached to check the sign-in. Try again shortly.', { retryAfter: 5 })
      throw new GoogleRejected('the ID token is not valid')
    }
    if (typeof payload.sub !== 'string' || typeof payload.email !== 'string') throw new GoogleRejected('the ID token has no subject or e-mail')
    return {
      subject: payload.sub,
      email: payload.email,
      emailVerified: payload.email_verified === true || payload.email_verified === 'true',
      name: typeof payload.name === 'string' ? payload.name : null
    }
  }

  async function fromCode (input: { code: string, redirectUri: string, codeVerifier?: string }): Promise<GoogleIdentity> {
    const clientId = configured()
    if (!settings.redirectUris.includes(input.redirectUri)) throw new GoogleRejected('the redirect URI is not one of ours')
    let response: Response
    try {
      response = await fetch(settings.tokenUrl, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams({
          grant_type: 'authorization_code',
          code: input.code,
          redirect_uri: input.redirectUri,
          client_id: clientId,
          client_secret: settings.clientSecret ?? '',
          ...(input.codeVerifier ? { code_verifier: input.codeVerifier } : {})
        }),
        signal: AbortSignal.timeout(10_000)
      })
    } catch {
      throw new DomainError('unavailable', 'Google unreachable', 'Google could not be reached to check the sign-in. Try again shortly.', { retryAfter: 5 })
    }
    const body = await response.json().catch(() => ({})) as { id_token?: string, error?: string }
    if (!response.ok || !body.id_token) throw new GoogleRejected(body.error ? `the code was refused (${body.error})` : 'the code was refused')
    return fromIdToken(body.id_token)
  }

  return { fromIdToken, fromCode }
}

/**
 * Signs in with a Google identity: by its subject, else by its address (linked only when Google says the
 * address is verified, and then on linkIdentity's terms: an account nobody verified loses what its creator
 * held), else a new account.
 */
export async function signInWithGoogle (db: Kysely<DB>, deps: AccountDeps, google: GoogleVerifier, input: { idToken?: string, code?: string, redirectUri?: string, codeVerifier?: string }): Promise<TokenPair> {
  const identity = input.idToken
    ? await google.fromIdToken(input.idToken)
    : await google.fromCode({ code: input.code!, redirectUri: input.redirectUri!, codeVerifier: input.codeVerifier })
  let account = await repo.findAccountByGoogleSubject(db, identity.subject)
  let event = 'session.sign_in'
  if (!account) {
    const byEmail = await repo.findAccountByEmail(db, identity.email)
    if (byEmail) {
      if (!identity.emailVerified) throw new GoogleEmailUnverified()
      const linked = await db.transaction().execute((trx) => linkIdentity(trx, byEmail, { google_subject: identity.subject }, 'google'))
      account = linked.account
      await deps.cache.invalidate(byEmail.id)
      await deps.revocations.revoke(linked.revoked)
      event = 'account.google_linked'
    } else {
      try {
        account = await repo.insertAccount(db, {
          email: identity.email,
          name: identity.name ?? identity.email.split('@')[0]!,
          password_hash: null,
          google_subject: identity.subject,
          email_verified_at: identity.emailVerified ? new Date() : null
        })
        event = 'account.sign_up'
      } catch (err) {
        // A parallel first sign-in of the same identity (a double click) inserted it first: use that one.
        if ((err as { code?: string }).code !== '23505') throw err
        account = await repo.findAccountByGoogleSubject(db, identity.subject)
        if (!account) throw new GoogleEmailUnverified()
      }
    }
  }
  if (!account || account.disabled_at) throw new InvalidCredentials()
  await recordAudit(db, { action: event, actorId: account.id, target: { type: 'account', id: account.id }, details: { method: 'google' } })
  return openSession(db, deps, account)
}
