// Where the daily usage files go: a bucket (USAGE_BUCKET, or the log bucket; usage.s3-store.ts, loaded only
// then) or DATA_DIR when no bucket is configured (the embedded default).
import { access, mkdir, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'

export interface UsageStore {
  readonly kind: 's3' | 'local'
  exists (key: string): Promise<boolean>
  put (key: string, body: Buffer, contentType: string): Promise<void>
}

export function createLocalUsageStore (folder: string): UsageStore {
  const root = resolve(folder)
  const pathOf = (key: string) => {
    const path = resolve(join(root, key))
    if (!path.startsWith(root + sep)) throw new Error(`usage store: ${key} is outside the store`)
    return path
  }
  return {
    kind: 'local',
    async exists (key) {
      return access(pathOf(key)).then(() => true, () => false)
    },
    async put (key, body) {
      const path = pathOf(key)
      await mkdir(dirname(path), { recursive: true })
      await writeFile(path, body)
    }
  }
}
