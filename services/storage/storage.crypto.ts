// Tokens at rest: AES-256-GCM, a fresh 96-bit IV per value, the key id stored beside the ciphertext so keys
// can rotate (the first key encrypts, every listed key decrypts).
import { createCipheriv, createDecipheriv, hkdfSync, randomBytes } from 'node:crypto'

export interface TokenCipher {
  readonly keyId: string
  encrypt (plain: string): string
  decrypt (keyId: string, sealed: string): string
}

export function parseTokenKeys (setting: string | null, fallbackSecret: string): Array<{ id: string, key: Buffer }> {
  if (!setting) return [{ id: 'derived', key: Buffer.from(hkdfSync('sha256', fallbackSecret, 'fractal', 'storage-token-encryption', 32)) }]
  return setting.split(',').map((entry) => {
    const [id, material] = entry.split(':') as [string, string]
    const key = Buffer.from(material, /[+/=]/.test(material) ? 'base64' : 'base64url')
    if (key.length !== 32) throw new Error(`config: STORAGE_TOKEN_KEYS key ${id} is not 32 bytes`)
    return { id, key }
  })
}

export function createTokenCipher (keys: Array<{ id: string, key: Buffer }>): TokenCipher {
  const byId = new Map(keys.map((k) => [k.id, k.key]))
  const current = keys[0]!
  return {
    keyId: current.id,
    encrypt (plain) {
      const iv = randomBytes(12)
      const cipher = createCipheriv('aes-256-gcm', current.key, iv)
      const body = Buffer.concat([cipher.update(plain, 'utf8'), cipher.final()])
      return Buffer.concat([iv, cipher.getAuthTag(), body]).toString('base64url')
    },
    decrypt (keyId, sealed) {
      const key = byId.get(keyId)
      if (!key) throw new Error(`storage tokens: no key ${keyId} (STORAGE_TOKEN_KEYS must keep every key still in use)`)
      const raw = Buffer.from(sealed, 'base64url')
      const decipher = createDecipheriv('aes-256-gcm', key, raw.subarray(0, 12))
      decipher.setAuthTag(raw.subarray(12, 28))
      return Buffer.concat([decipher.update(raw.subarray(28)), decipher.final()]).toString('utf8')
    }
  }
}
