// A real S3 (s3rver) on a free local port, its objects in a temp folder, with one bucket made through the
// real @aws-sdk/client-s3. It can be stopped and started again (same port, same folder) for fault tests.
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { createRequire } from 'node:module'
import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client
} from '@aws-sdk/client-s3'

type Test = { teardown (fn: () => unknown): void }

// s3rver ships no types: the little of it we use.
interface S3rverInstance {
  run (): Promise<AddressInfo>
  close (): Promise<void>
  httpServer?: Server
}
type S3rverClass = new (options: {
  address: string
  port: number
  directory: string
  silent: boolean
  resetOnClose: boolean
  vhostBuckets: boolean
  configureBuckets?: Array<{ name: string }>
}) => S3rverInstance
const S3rver = createRequire(import.meta.url)('s3rver') as S3rverClass

/** s3rver accepts this key pair (and checks the signatures made with it). */
export const s3rverCredentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }

export interface S3Server {
  /** `http://127.0.0.1:PORT` */
  endpoint: string
  bucket: string
  /** Where s3rver keeps the objects. */
  directory: string
  /** A client of our own, to look at the bucket (path style, s3rver's credentials). */
  client: S3Client
  /** The config a test app needs to store its logs here. */
  env: { LOG_BUCKET: string, LOG_S3_ENDPOINT: string, LOG_S3_FORCE_PATH_STYLE: string, LOG_S3_REGION: string }
  /** Every key in the bucket (under `prefix`), sorted. */
  keys (prefix?: string): Promise<string[]>
  /** An object's bytes, or null when there is none. */
  get (key: string): Promise<Buffer | null>
  put (key: string, body: Buffer): Promise<void>
  /** Stops answering (connections refused); the objects stay on disk. */
  stop (): Promise<void>
  /** Answers again, on the same port, with the same objects. */
  start (): Promise<void>
  readonly running: boolean
}

export async function startS3 (t: Test): Promise<S3Server> {
  const directory = await mkdtemp(join(tmpdir(), 's3rver-'))
  const bucket = `logs-${randomBytes(4).toString('hex')}`
  let port = 0
  let server: S3rverInstance | null = null

  async function start () {
    if (server) return
    const next = new S3rver({ address: '127.0.0.1', port, directory, silent: true, resetOnClose: false, vhostBuckets: false })
    const address = await next.run()
    port = address.port
    server = next
  }
  async function stop () {
    const current = server
    if (!current) return
    server = null
    // Keep-alive sockets of the SDK clients would hold close() open: end them now.
    const closing = current.close()
    current.httpServer?.closeAllConnections()
    await closing
  }

  await start()
  const endpoint = `http://127.0.0.1:${port}`
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials: s3rverCredentials })
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  t.teardown(async () => {
    client.destroy()
    await stop()
    await rm(directory, { recursive: true, force: true })
  })

  return {
    endpoint,
    bucket,
    directory,
    client,
    env: { LOG_BUCKET: bucket, LOG_S3_ENDPOINT: endpoint, LOG_S3_FORCE_PATH_STYLE: 'true', LOG_S3_REGION: 'us-east-1' },
    async keys (prefix) {
      const keys: string[] = []
      let token: string | undefined
      do {
        const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }))
        keys.push(...(page.Contents ?? []).map((o) => o.Key!))
        token = page.IsTruncated ? page.NextContinuationToken : undefined
      } while (token)
      return keys.sort()
    },
    async get (key) {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
        return Buffer.from(await out.Body!.transformToByteArray())
      } catch (err) {
        if ((err as { name?: string }).name === 'NoSuchKey') return null
        throw err
      }
    },
    async put (key, body) {
      await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }))
    },
    stop,
    start,
    get running () { return server !== null }
  }
}
