// The log part of `npm run bench`: a real S3 peer (s3rver) for ours, and the time a worker process takes to
// store every log the upload scenario accepted (uploads per second to S3).
import { mkdir } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import { once } from 'node:events'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3'
import pg from 'pg'
import S3rver from 's3rver'

const bucket = 'fractal-bench-logs'

export async function startS3 (dataDir: string) {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  const directory = join(dataDir, 's3rver')
  await mkdir(directory, { recursive: true })
  const s3rver = new S3rver({ port, address: '127.0.0.1', directory, silent: true })
  await s3rver.run()
  const endpoint = `http://127.0.0.1:${port}`
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' }
  const client = new S3Client({ region: 'us-east-1', endpoint, forcePathStyle: true, credentials })
  await client.send(new CreateBucketCommand({ Bucket: bucket }))
  client.destroy()
  return {
    env: {
      LOG_BUCKET: bucket,
      LOG_S3_ENDPOINT: endpoint,
      LOG_S3_FORCE_PATH_STYLE: 'true',
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey
    },
    close: () => s3rver.close()
  }
}

export interface LogDrainResult { stored: number, pending: number, ms: number, perSecond: number, averageBytes: number }

/** Starts a worker (schedules slowed down so nothing else runs) and times it until no log is pending. */
export async function drainLogs (o: { databaseUrl: string, start: (env: NodeJS.ProcessEnv) => Promise<unknown>, log: (line: string) => void, limitMs?: number }): Promise<LogDrainResult> {
  const db = new pg.Client({ connectionString: o.databaseUrl })
  await db.connect()
  try {
    const count = async () => (await db.query<{ pending: number, stored: number, bytes: number }>(
      "select count(*) filter (where status = 'pending')::int pending, count(*) filter (where status = 'stored')::int stored, coalesce(avg(bytes), 0)::int bytes from log_upload")).rows[0]!
    const before = await count()
    o.log(`log drain: ${before.pending} logs pending; starting a worker`)
    const started = performance.now()
    await o.start({ WARM_POOL_INTERVAL_MS: '3600000', REAP_INTERVAL_MS: '3600000', HOSTS_REAP_INTERVAL_MS: '3600000', LOG_SPOOL_INTERVAL_MS: '3600000', WORKER_CONCURRENCY: '8' })
    const limit = started + (o.limitMs ?? 300_000)
    let now = before
    while (now.pending > 0 && performance.now() < limit) {
      await sleep(200)
      now = await count()
    }
    const ms = performance.now() - started
    const stored = now.stored - before.stored
    o.log(`log drain: ${stored} stored in ${Math.round(ms)} ms, ${now.pending} pending`)
    return { stored, pending: now.pending, ms, perSecond: stored / (ms / 1000), averageBytes: now.bytes }
  } finally {
    await db.end()
  }
}
