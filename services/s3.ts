// The S3 client of a bucket setting (log bucket, usage bucket): AWS, or any S3-compatible endpoint.
import { S3Client } from '@aws-sdk/client-s3'

export interface BucketSettings { bucket: string, region: string, endpoint: string | null, forcePathStyle: boolean }

export function s3ClientFor (options: BucketSettings): S3Client {
  return new S3Client({
    region: options.region,
    ...(options.endpoint ? { endpoint: options.endpoint } : {}),
    forcePathStyle: options.forcePathStyle
  })
}
