// The daily usage files in a bucket (USAGE_BUCKET, or LOG_BUCKET under usage/). Loaded only when one is set.
import { HeadObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import type { UsageStore } from './usage.store.js'

export function createS3UsageStore (options: { bucket: string, region: string, endpoint: string | null, forcePathStyle: boolean }): UsageStore {
  const client = new S3Client({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle
  })
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
