import type { Account, PersonalAccessToken, Session } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'
import type { TokenPair } from '../../services/accounts/accounts.service.js'

type Schemas = components['schemas']

export function presentUser (row: Account): Schemas['User'] {
  return {
    id: row.id,
    email: row.email,
    name: row.name,
    role: row.role,
    emailVerified: row.email_verified_at !== null,
    pendingEmail: row.pending_email,
    createdAt: row.created_at.toISOString()
  }
}

export function presentAdminUser (row: Account): Schemas['AdminUser'] {
  return {
    ...presentUser(row),
    disabled: row.disabled_at !== null,
    lastSignInAt: row.last_sign_in_at?.toISOString() ?? null,
    partnerId: row.partner_id,
    signUpReason: row.sign_up_reason,
    referralCode: row.referral_code
  }
}

export function presentPersonalToken (row: PersonalAccessToken): Schemas['PersonalToken'] {
  return {
    id: row.id,
    userId: row.account_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes as Schemas['BearerScope'][],
    readOnly: row.read_only,
    expiresAt: row.expires_at.toISOString(),
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    revokedAt: row.revoked_at?.toISOString() ?? null
  }
}

export function presentSession (row: Session, currentSessionId: string | null): Schemas['Session'] {
  return {
    id: row.id,
    createdAt: row.created_at.toISOString(),
    lastUsedAt: row.last_used_at.toISOString(),
    expiresAt: row.expires_at.toISOString(),
    ip: row.ip,
    userAgent: row.user_agent,
    current: row.id === currentSessionId
  }
}

export function presentTokenPair (pair: TokenPair): Schemas['TokenPair'] {
  return {
    tokenType: pair.tokenType,
    accessToken: pair.accessToken,
    expiresIn: pair.expiresIn,
    refreshToken: pair.refreshToken,
    refreshExpiresIn: pair.refreshExpiresIn,
    user: presentUser(pair.account)
  }
}
