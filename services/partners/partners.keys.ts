import { randomBytes } from 'node:crypto'
import { hashToId, newSecret } from '../hashing.js'

// `frp_<12 hex>_<43 base64url>`: the prefix identifies the key to people (lists show it), the secret is
// 256 random bits. Only a SHA-256 of the whole key is stored: with that much entropy a slow hash adds nothing.
const keyPattern = /^frp_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/

export function newPartnerKey (): { key: string, prefix: string, hash: string } {
  const prefix = `frp_${randomBytes(6).toString('hex')}`
  const key = `${prefix}_${newSecret()}`
  return { key, prefix, hash: hashToId(key) }
}

/** Whether a presented value has the shape of a key (anything else is refused without a query). */
export function looksLikePartnerKey (value: string): boolean {
  return keyPattern.test(value)
}
