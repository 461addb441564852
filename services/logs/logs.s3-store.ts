// The S3 log store (a private bucket, or any S3-compatible endpoint). Loaded only when LOG_BUCKET is set.
import type { Readable } from 'node:stream'
import { DeleteObjectsCommand, GetObjectCommand } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { getSignedUrl } from '@aws-sdk/s3-request-presigner'
import { s3ClientFor, type BucketSettings } from '../s3.js'
import type { LogStore } from './logs.store.js'

export function createS3Store (options: BucketSettings): LogStore {
  const client = s3ClientFor(options)
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
        const out = await client.send(new DeleteObjectsCommand({ Bucket: options.bucket, Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true } }))
        // A key S3 refused to delete keeps its row (the next pass tries again), never an orphan object.
        if (out.Errors?.length) throw new Error(`S3 refused to delete ${out.Errors.length} log objects: ${out.Errors[0]?.Code ?? ''} ${out.Errors[0]?.Message ?? ''}`)
      }
    }
  }
}
