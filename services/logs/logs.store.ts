// Where stored logs live: a private S3 bucket (or any S3-compatible endpoint: logs.s3-store.ts, loaded only
// then), or DATA_DIR/logs when no bucket is configured (the embedded default).
import { createReadStream } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import type { Readable } from 'node:stream'

export interface LogStore {
  readonly kind: 's3' | 'local'
  put (key: string, body: Buffer): Promise<void>
  get (key: string): Promise<Readable>
  /** A short-lived download URL, or null when the store has none (local: the API serves the content). */
  presign (key: string, ttlSeconds: number): Promise<string | null>
  delete (keys: string[]): Promise<void>
}

export function createLocalStore (folder: string): LogStore {
  const root = resolve(folder)
  const pathOf = (key: string) => {
    const path = resolve(join(root, key))
    // Keys are ours, but a path must never leave the folder.
    if (!path.startsWith(root + sep)) throw new Error(`log store: ${key} is outside the store`)
    return path
  }
  return {
    kind: 'local',
    async put (key, body) {
      const path = pathOf(key)
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, body)
    },
    async get (key) {
      const stream = createReadStream(pathOf(key))
      await new Promise((resolve, reject) => { stream.once('open', resolve); stream.once('error', reject) })
      return stream
    },
    async presign () { return null },
    async delete (keys) {
      for (const key of keys) await rm(pathOf(key), { force: true })
    }
  }
}
