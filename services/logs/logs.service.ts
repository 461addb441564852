import { randomBytes } from 'node:crypto'
import { Readable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { promisify } from 'node:util'
import { createGunzip, gzip } from 'node:zlib'
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB, LogUpload } from '../../db/types.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import type { JobQueue } from '../queue.js'
import { LogContainerNotFound, LogNotFound, LogNotStored, LogTooLarge, NotGzip, WrongSender } from './logs.errors.js'
import type { LogStore } from './logs.store.js'

const gzipAsync = promisify(gzip)

/** The compressed body is fed to the inflater in slices of this size (zlib's own output chunk is 16 KiB). */
const sliceBytes = 16 * 1024

/** What inflating a gzip body took: bytes it produced, compressed bytes it consumed, and whether it went past the cap. */
export interface GzipMeasure { inflated: number, consumed: number, overCap: boolean }

/**
 * Inflates a gzip body as a stream, counting each chunk and dropping it (one chunk is held at a time), and
 * stops as soon as the output passes `cap`: a bomb costs at most `cap` bytes of inflating, never memory.
 * The body must be whole: a truncated or corrupt stream is NotGzip (a 400 now, not an unreadable log later).
 */
export async function measureGzip (body: Buffer, cap: number): Promise<GzipMeasure> {
  if (body.length < 18 || body[0] !== 0x1f || body[1] !== 0x8b) throw new NotGzip()
  const gunzip = createGunzip()
  let inflated = 0
  let overCap = false
  const slices = function * () { for (let at = 0; at < body.length; at += sliceBytes) yield body.subarray(at, at + sliceBytes) }
  try {
    await pipeline(Readable.from(slices()), gunzip, async function count (chunks: AsyncIterable<Buffer>) {
      for await (const chunk of chunks) {
        inflated += chunk.length
        // Throwing ends the pipeline: the inflater is destroyed, and the rest of the body is never inflated.
        if (inflated > cap) { overCap = true; throw new Error('over the cap') }
      }
    })
  } catch {
    if (!overCap) throw new NotGzip()
  }
  return { inflated, consumed: gunzip.bytesWritten, overCap }
}

export const uploadLogJob = { family: 'logs', name: 'uploadLog' } as const
export interface UploadLogPayload { logId: string, jobId: string }

export interface LogDeps {
  queue: JobQueue
  store: LogStore
  /** The most a log may hold once inflated (LOG_MAX_INFLATED_BYTES): text as sent, gzip once inflated. */
  maxInflatedBytes: number
  log?: { warn (obj: object, msg: string): void }
}

export type LogSender = { kind: 'user', userId: string } | { kind: 'container', containerId: string, userId: string | null }

/** Row columns without the body: lists never read the spool. */
const listed = ['id', 'user_id', 'container_id', 'sender', 'object_key', 'bytes', 'status', 'job_id', 'created_at', 'stored_at'] as const
export type LogRow = Omit<LogUpload, 'body'>

/**
 * Accepts a log: checked, gzipped (text) or verified to be gzip, kept in PostgreSQL (the spool) with its
 * job, in one transaction; the job stores it. A queue that is away delays the upload (the spool schedule
 * queues it again); it never loses it.
 */
export async function acceptLog (db: Kysely<DB>, deps: LogDeps, from: LogSender, input: { sender: 'client' | 'server', containerId?: string | undefined, body: string | Buffer }) {
  if (from.kind === 'user' && input.sender !== 'client') throw new WrongSender(input.sender, 'client app')
  if (from.kind === 'container' && input.sender !== 'server') throw new WrongSender(input.sender, 'container')
  let containerId: string | null = from.kind === 'container' ? from.containerId : input.containerId ?? null
  let userId = from.userId
  if (from.kind === 'user' && containerId) {
    const owned = await db.selectFrom('container').select('id').where('id', '=', containerId).where('user_id', '=', from.userId).executeTakeFirst()
    if (!owned) throw new LogContainerNotFound(containerId)
  }
  if (from.kind === 'container') containerId = from.containerId
  if (typeof input.body === 'string' ? Buffer.byteLength(input.body) > deps.maxInflatedBytes : (await measureGzip(input.body, deps.maxInflatedBytes)).overCap) {
    throw new LogTooLarge(deps.maxInflatedBytes)
  }
  const gz = typeof input.body === 'string' ? await gzipAsync(input.body) : input.body
  const stamp = new Date().toISOString().replace(/[-:.]/g, '')
  const key = `logs/${userId ?? 'unassigned'}/${containerId ?? 'none'}/${input.sender}-${stamp}-${randomBytes(4).toString('hex')}.txt.gz`
  userId ??= null
  const row = await db.transaction().execute(async (trx) => {
    const job = await trx.insertInto('job').values({ kind: 'upload_log', owner_id: userId, message: 'queued' }).returning('id').executeTakeFirstOrThrow()
    return trx.insertInto('log_upload').values({ user_id: userId, container_id: containerId, sender: input.sender, object_key: key, bytes: gz.length, body: gz, job_id: job.id })
      .returning(listed).executeTakeFirstOrThrow()
  })
  try {
    await deps.queue.enqueue<UploadLogPayload>(uploadLogJob, { logId: row.id, jobId: row.job_id! }, { jobId: row.job_id!, retries: 5 })
  } catch (err) {
    deps.log?.warn({ err, logId: row.id }, 'log accepted but not queued: the spool schedule will queue it')
  }
  return row
}

/** The upload job: the spooled body goes to the store, then the spool is emptied. Idempotent. */
export async function storeLog (db: Kysely<DB>, store: LogStore, data: UploadLogPayload, lastAttempt: boolean) {
  const row = await db.selectFrom('log_upload').selectAll().where('id', '=', data.logId).executeTakeFirst()
  if (!row || row.status === 'stored' || !row.body) {
    await db.updateTable('job').set({ state: 'succeeded', progress: 100, message: row ? 'stored' : 'gone', updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
    return
  }
  await db.updateTable('job').set({ state: 'running', progress: 10, message: 'uploading', updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
  try {
    await store.put(row.object_key, row.body)
  } catch (err) {
    // The body stays in the spool: a later attempt (or the spool schedule) uploads it.
    await db.updateTable('job').set({
      message: `the store is unavailable: ${(err as Error).message.slice(0, 200)}`,
      ...(lastAttempt ? { state: 'failed', error_code: 'store_unavailable', progress: 100 } : {}),
      updated_at: sql`now()`
    }).where('id', '=', data.jobId).execute()
    throw err
  }
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('log_upload').set({ status: 'stored', body: null, stored_at: sql`now()` }).where('id', '=', row.id).execute()
    await trx.updateTable('job').set({ state: 'succeeded', progress: 100, message: 'stored', error_code: null, updated_at: sql`now()` }).where('id', '=', data.jobId).execute()
  })
}

/** Spooled logs nobody is uploading (their queue entry was lost, or every attempt failed): queued again. */
export async function requeueSpooled (db: Kysely<DB>, queue: JobQueue, olderThanMs: number) {
  const stale = await db.selectFrom('log_upload').innerJoin('job', 'job.id', 'log_upload.job_id')
    .select(['log_upload.id', 'log_upload.job_id'])
    .where('log_upload.status', '=', 'pending')
    .where((eb) => eb.or([eb('job.state', '=', 'failed'), eb('job.updated_at', '<', new Date(Date.now() - olderThanMs))]))
    .limit(500).execute()
  for (const s of stale) {
    await db.updateTable('job').set({ state: 'queued', error_code: null, message: 'queued again', updated_at: sql`now()` }).where('id', '=', s.job_id!).execute()
    await queue.enqueue<UploadLogPayload>(uploadLogJob, { logId: s.id, jobId: s.job_id! }, { jobId: `${s.job_id}:${Date.now()}`, retries: 5 })
  }
  return { requeued: stale.length }
}

/** Logs older than the retention: objects deleted from the store, then their rows. */
export async function expireLogs (db: Kysely<DB>, store: LogStore, retentionDays: number) {
  const cutoff = new Date(Date.now() - retentionDays * 86_400_000)
  let deleted = 0
  for (;;) {
    const old = await db.selectFrom('log_upload').select(['id', 'object_key', 'status']).where('created_at', '<', cutoff).limit(1000).execute()
    if (old.length === 0) break
    await store.delete(old.filter((r) => r.status === 'stored').map((r) => r.object_key))
    await db.deleteFrom('log_upload').where('id', 'in', old.map((r) => r.id)).execute()
    deleted += old.length
    if (old.length < 1000) break
  }
  return { deleted }
}

export interface LogFilters { limit: number, cursor?: string | undefined, user?: string | undefined, container?: string | undefined, sender?: 'client' | 'server' | undefined, from?: string | undefined, to?: string | undefined }

export async function listLogs (db: Kysely<DB>, filters: LogFilters) {
  const before = filters.cursor ? decodeKeyset(filters.cursor) : null
  const rows = await db.selectFrom('log_upload').select(listed)
    .$if(filters.user !== undefined, (q) => q.where('user_id', '=', filters.user!))
    .$if(filters.container !== undefined, (q) => q.where('container_id', '=', filters.container!))
    .$if(filters.sender !== undefined, (q) => q.where('sender', '=', filters.sender!))
    .$if(filters.from !== undefined, (q) => q.where('created_at', '>=', new Date(filters.from!)))
    .$if(filters.to !== undefined, (q) => q.where('created_at', '<', new Date(filters.to!)))
    .$if(before !== null, (q) => q.where((eb) => eb.or([
      eb('created_at', '<', before!.createdAt),
      eb.and([eb('created_at', '=', before!.createdAt), eb('id', '<', before!.id)])
    ])))
    .orderBy('created_at', 'desc').orderBy('id', 'desc').limit(filters.limit + 1).execute()
  return pageOf(rows, filters.limit)
}

/** A stored log's content, for its owner or an admin (another user's log is "not found"). */
export async function logContent (db: Kysely<DB>, store: LogStore, principal: { userId: string, role: string }, id: string) {
  const row = await db.selectFrom('log_upload').select(listed).where('id', '=', id).executeTakeFirst()
  if (!row || (row.user_id !== principal.userId && principal.role !== 'admin')) throw new LogNotFound(id)
  if (row.status !== 'stored') throw new LogNotStored(id)
  try {
    return await store.get(row.object_key)
  } catch (err) {
    // Deleted behind our back (a lifecycle rule, an operator): gone, not a server error.
    if (/ENOENT|NoSuchKey|NotFound/.test(`${(err as { code?: string }).code ?? ''} ${(err as Error).name}`)) throw new LogNotFound(id)
    throw err
  }
}
