import { createHash, randomBytes } from 'node:crypto'
import { hash, verify } from '@node-rs/argon2'
import commonPasswords from 'fxa-common-password-list'

/** An opaque token for a link or a refresh: 256 random bits, URL-safe. Only its hash is stored. */
export function newToken (): string {
  return randomBytes(32).toString('base64url')
}

export function hashToken (token: string): string {
  return createHash('sha256').update(token).digest('base64url')
}

// argon2id with the OWASP-recommended minimum (19 MiB, 2 passes); @node-rs/argon2 runs it on the libuv
// pool, off the event loop.
// algorithm 2 is Algorithm.Argon2id (a const enum, not importable under isolatedModules).
const options = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 }

export function hashPassword (password: string): Promise<string> {
  return hash(password, options)
}

let dummy: Promise<string> | undefined
/**
 * Verifies a password; with no hash (unknown address, Google-only account) it verifies against a dummy so
 * the answer takes the same time either way.
 */
export async function verifyPassword (passwordHash: string | null, password: string): Promise<boolean> {
  dummy ??= hashPassword('not-a-real-password-but-as-slow')
  const ok = await verify(passwordHash ?? await dummy, password).catch(() => false)
  return passwordHash !== null && ok
}

/** Why a password is refused, or null: length, the few thousand most common ones, the address itself. */
export function passwordProblem (password: string, minLength: number, email?: string): string | null {
  if (password.length < minLength) return `must be at least ${minLength} characters`
  if (commonPasswords.test(password) || commonPasswords.test(password.toLowerCase())) return 'is one of the most common passwords'
  if (email && password.toLowerCase().includes(email.toLowerCase().split('@')[0]!) && email.split('@')[0]!.length >= 4) return 'must not contain your e-mail address'
  return null
}
