import type { Partner, PartnerApiKey } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'

type Schemas = components['schemas']

export function presentPartner (row: Partner & { users: number }): Schemas['Partner'] {
  return { id: row.id, name: row.name, users: row.users, createdAt: row.created_at.toISOString() }
}

/** A key as lists show it: its prefix, never its secret nor its hash. */
export function presentPartnerKey (row: PartnerApiKey): Schemas['PartnerApiKey'] {
  return {
    id: row.id,
    partnerId: row.partner_id,
    name: row.name,
    prefix: row.prefix,
    scopes: row.scopes,
    expiresAt: row.expires_at.toISOString(),
    lastUsedAt: row.last_used_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString(),
    revokedAt: row.revoked_at?.toISOString() ?? null
  }
}
