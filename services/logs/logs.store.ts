// Where stored logs live: a private S3 bucket (or any S3-compatible endpoint), or DATA_DIR/logs when no
// bucket is configured (the embedded default).
import { createReadStream } from 'node:fs'
import { mkdir, rm, writeFile } from 'node:fs/promises'
import { dirname, join, resolve, sep } from 'node:path'
import type { Readable } from 'node:stream'
import { DeleteObjectsCommand, GetObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'

export interface LogStore {
  readonly kind: 's3' | 'local'
  put (key: string, body: Buffer): Promise<void>
  get (key: string): Promise<Readable>
  /** A short-lived download URL, or null when the store has none (local: the API serves the content). */
  presign (key: string, ttlSeconds: number): Promise<string | null>
  delete (keys: string[]): Promise<void>
}

export function createS3Store (options: { bucket: string, region: string, endpoint: string | null, forcePathStyle: boolean }): LogStore {
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle
  })
  return {
    kind: 's3',
    async put (key, body) {
      // Multipart above 5 MiB (lib-storage splits and retries parts), a single PUT below.
      await new Upload({
        client,
        params: { Bucket: options.bucket, Key: key, Body: body, ContentType: 'application/gzip', ContentEncoding: 'identity' }
      }).done()
    },
    async get (key) {
      const out = await client.send(new GetObjectCommand({ Bucket: options.bucket, Key: key }))
      return out.Body as Readable
    },
    presign (key, ttlSeconds) {
      return getSignedUrl(client, new GetObjectCommand({ Bucket: options.bucket, Key: key }), { expiresIn: ttlSeconds })
    },
    async delete (keys) {
      for (let i = 0; i < keys.length; i += 1000) {
        await client.send(new DeleteObjectsCommand({ Bucket: options.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }))
      }
    }
  }
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
