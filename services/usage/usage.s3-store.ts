// The daily usage files in a bucket (USAGE_BUCKET, or LOG_BUCKET under usage/). Loaded only when one is set.
import { HeadObjectCommand, PutObjectCommand } from '@aws-sdk/client-s3'
import { s3ClientFor, type BucketSettings } from '../s3.js'
import type { UsageStore } from './usage.store.js'

export function createS3UsageStore (options: BucketSettings): UsageStore {
  const client = s3ClientFor(options)
  return {
    kind: 's3',
    async exists (key) {
      try {
        await client.send(new HeadObjectCommand({ Bucket: options.bucket, Key: key }))
        return true
      } catch (err) {
        const e = err as { name?: string, $metadata?: { httpStatusCode?: number } }
        if (e.name === 'NotFound' || e.$metadata?.httpStatusCode === 404) return false
        throw err
      }
    },
    async put (key, body, contentType) {
      await client.send(new PutObjectCommand({ Bucket: options.bucket, Key: key, Body: body, ContentType: contentType }))
    }
  }
}
