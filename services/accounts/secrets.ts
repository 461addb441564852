// argon2id with the OWASP-recommended minimum (19 MiB, 2 passes); @node-rs/argon2 runs it on the libuv
// pool, off the event loop.
// algorithm 2 is Algorithm.Argon2id (a const enum, not importable under isolatedModules).
const options = { algorithm: 2, memoryCost: 19456, timeCost: 2, parallelism: 1 }

// The native module is loaded on the first password, not at start-up.
let argon2: Promise<typeof import('@node-rs/argon2')> | undefined
const load = () => (argon2 ??= import('@node-rs/argon2'))

export async function hashPassword (password: string): Promise<string> {
  return (await load()).hash(password, options)
}

let dummy: Promise<string> | undefined
/**
 * Verifies a password; with no hash (unknown address, Google-only account) it verifies against a dummy so
 * the answer takes the same time either way.
 */
export async function verifyPassword (passwordHash: string | null, password: string): Promise<boolean> {
  dummy ??= hashPassword('not-a-real-password-but-as-slow')
  const { verify } = await load()
  const ok = await verify(passwordHash ?? await dummy, password).catch(() => false)
  return passwordHash !== null && ok
}

// The list (Mozilla's, about 10,000 passwords) is decoded on first use, not at start-up.
let common: Promise<{ test (password: string): boolean }> | undefined

/** Why a password is refused, or null: length, the most common ones, the address itself. */
export async function passwordProblem (password: string, minLength: number, email?: string): Promise<string | null> {
  if (password.length < minLength) return `must be at least ${minLength} characters`
  common ??= import('fxa-common-password-list').then((m) => m.default)
  const list = await common
  if (list.test(password) || list.test(password.toLowerCase())) return 'is one of the most common passwords'
  if (email && password.toLowerCase().includes(email.toLowerCase().split('@')[0]!) && email.split('@')[0]!.length >= 4) return 'must not contain your e-mail address'
  return null
}
