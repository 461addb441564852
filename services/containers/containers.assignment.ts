// Assignment: a user gets a container for an app, warm from a pool (201) or started by a job (202), in
// one round trip of fractal_assign_container(s), batched with concurrent assignments.
import { randomBytes } from 'node:crypto'
import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { Container, DB, Job } from '../../db/types.js'
import { UnstorableValue, storable } from '../errors.js'
import { Batcher } from '../batcher.js'
import { hashToId, newSecret } from '../hashing.js'
import type { JobQueue } from '../queue.js'
import { problemOf } from '../sql-errors.js'
import { ClusterOutsideRegion, IdempotencyMismatch, UnknownCluster } from './containers.errors.js'
import * as repo from './containers.repository.js'
import type { ContainerDeps } from './containers.service.js'
import { rankRegions, type Location } from './geo.js'

export interface StartContainerPayload {
  containerId: string
  jobId: string
  /** The container's secret, handed to the task at RunTask (only its hash is stored). */
  secret: string
  /** Continuations of one start job (each a delayed queue job of its own). */
  step?: number
  /** Consecutive throttling/5xx answers: the backoff grows with them. */
  transientFailures?: number
  /** A warm-pool container's start (nobody waits for it): it runs on the warm-pools queue. */
  warm?: boolean
}

export const startContainerJob = { family: 'containers', name: 'startContainer' } as const
/**
 * The same job for warm-pool refills, on a queue of its own: a user's start never waits behind a backlog
 * of refills (issue 20: the first start waited 17 s behind 96 of them), and each queue has its workers.
 */
export const warmStartContainerJob = { family: 'warm-pools', name: 'startContainer' } as const

/** The queue job a start (or its continuation) goes to. */
export const startJobOf = (payload: Pick<StartContainerPayload, 'warm'>) => payload.warm ? warmStartContainerJob : startContainerJob

/** What an assignment answered: a warm container (201) or a starting one with its job (202). */
export type Assignment =
  | { status: 201, container: Container }
  | { status: 202, container: Container, job: Job }

async function replay (db: Kysely<DB>, stored: { status: number | null, body: unknown }): Promise<Assignment | null> {
  if (stored.status === null) return null
  const ref = stored.body as { containerId: string, jobId?: string }
  const container = await repo.findContainer(db, ref.containerId)
  if (!container) return null
  if (stored.status === 201) return { status: 201, container }
  const job = ref.jobId ? await repo.findJob(db, ref.jobId) : undefined
  return job ? { status: 202, container, job } : null
}

/** A row PostgreSQL sent as JSON (to_jsonb): its timestamps back to Dates. */
function revive<T> (row: Record<string, unknown>): T {
  const out: Record<string, unknown> = { ...row }
  for (const [key, value] of Object.entries(row)) if (key.endsWith('_at') && typeof value === 'string') out[key] = new Date(value)
  return out as T
}

type AssignOutcome =
  | { outcome: 'replay', status: number, body: { containerId: string, jobId?: string } }
  | { outcome: 'claimed', container: Record<string, unknown> }
  | { outcome: 'created', container: Record<string, unknown>, job: Record<string, unknown> }

/** One assignment as fractal_assign_containers takes it (db/functions/fractal_assign_containers.sql). */
export interface AssignCall {
  user: string
  key: string
  hash: string
  app: string
  region: string | null
  dpi: number | null
  aesKey: string
  secretHash: string
  deadline: string
  terms: unknown
  prefer: string[] | null
  /** A developer's assignment onto this cluster (its id): started there, never from the warm pool. */
  cluster: string | null
}
/** Its answer: fractal_assign_container's, or what it raised (rolled back alone). */
export type AssignAnswer = { ok: AssignOutcome } | { error: { code: string, message: string, detail: string | null } }

const byUserAndKey = (a: AssignCall, b: AssignCall) =>
  a.user < b.user ? -1 : a.user > b.user ? 1 : a.key < b.key ? -1 : a.key > b.key ? 1 : 0

/**
 * Assignments in one call of fractal_assign_containers: one round trip, one transaction, one commit. They
 * run ordered by user and key, so that two batches take their locks (Idempotency-Key rows, a user's
 * advisory lock) in one order and never deadlock; the answers come back in the callers' order.
 */
export async function runAssignments (db: Kysely<DB>, calls: AssignCall[]): Promise<AssignAnswer[]> {
  const order = calls.map((_, i) => i).sort((a, b) => byUserAndKey(calls[a]!, calls[b]!))
  const { rows } = await sql<{ answers: AssignAnswer[] }>`select fractal_assign_containers(${JSON.stringify(order.map((i) => calls[i]))}::jsonb) as answers`.execute(db)
  const answers = new Array<AssignAnswer>(calls.length)
  order.forEach((i, position) => { answers[i] = rows[0]!.answers[position]! })
  return answers
}

/**
 * Concurrent assignments batched (group commit): up to `maxSize` a call, `maxInFlight` calls at once. It cuts
 * PostgreSQL's CPU per assignment by about 40 % (see the T2900 migration) and doubled the warm-pool bench.
 */
export function assignmentBatcher (db: Kysely<DB>, options: { maxSize: number, maxInFlight: number, onBatch?: (size: number) => void }) {
  return new Batcher((calls: AssignCall[]) => runAssignments(db, calls), options)
}

/**
 * Hands a user a container for an app, in one call of fractal_assign_container (batched with concurrent
 * assignments when `deps.assignments` is set): the Idempotency-Key row, the offer and maintenance checks, one
 * live container per user and app (an advisory lock per user and app), then a warm container claimed with
 * FOR UPDATE SKIP LOCKED (201) or a new container and its start job (202), queued after commit. No network
 * call happens inside it. A replay returns the first answer; a concurrent replay waits for the first to
 * commit. Without a region and with a client location, the nearest open region is picked first (one more query).
 */
export async function assignContainer (
  db: Kysely<DB>, deps: ContainerDeps, userId: string, idempotencyKey: string,
  input: { app: string, region?: string | undefined, dpi?: number | undefined, near?: Location | null, cluster?: string | undefined }
): Promise<Assignment> {
  // A value the batch's jsonb would refuse fails alone, before it joins one (with other users' assignments).
  if (![idempotencyKey, input.app, input.region, input.dpi, input.cluster].every(storable)) throw new UnstorableValue()
  // Onto a named cluster (the caller checked the scope): an active one, whose region is the assignment's.
  let cluster: { id: string, region_code: string } | null = null
  if (input.cluster !== undefined) {
    cluster = (await repo.findActiveCluster(db, input.cluster)) ?? null
    if (!cluster) throw new UnknownCluster(input.cluster)
    if (input.region !== undefined && input.region !== cluster.region_code) throw new ClusterOutsideRegion(input.cluster, input.region)
    input = { ...input, region: cluster.region_code, near: null }
  }
  const secret = newSecret()
  // Near the client: the open regions in order of preference; the function takes the first the plan allows.
  const prefer = !input.region && input.near ? rankRegions(await repo.listOpenOffers(db, input.app), input.near).map((o) => o.region_code) : null
  const call: AssignCall = {
    user: userId,
    key: idempotencyKey,
    hash: hashToId(JSON.stringify({ app: input.app, region: input.region ?? null, dpi: input.dpi ?? null, ...(cluster ? { cluster: cluster.id } : {}) })),
    app: input.app,
    region: input.region ?? null,
    dpi: input.dpi ?? null,
    aesKey: randomBytes(16).toString('hex'),
    secretHash: hashToId(secret),
    deadline: new Date(Date.now() + deps.startTimeoutMs).toISOString(),
    terms: deps.entitlement?.terms ?? null,
    prefer,
    cluster: cluster?.id ?? null
  }
  let answer = deps.assignments ? await deps.assignments.submit(call) : (await runAssignments(db, [call]))[0]!
  // Chosen as a deadlock's victim (against a transaction outside the batches): once more, alone.
  if ('error' in answer && answer.error.code === '40P01') answer = (await runAssignments(db, [call]))[0]!
  if ('error' in answer) {
    const { code, message, detail } = answer.error
    throw problemOf(Object.assign(new Error(message), { code, ...(detail !== null ? { detail } : {}) }), { ...input, appUrl: deps.entitlement?.appUrl ?? '' })
  }
  const result = answer.ok
  if (result.outcome === 'replay') {
    const again = await replay(db, { status: result.status, body: result.body })
    if (!again) throw new IdempotencyMismatch()
    return again
  }
  if (result.outcome === 'claimed') {
    const container = revive<Container>(result.container)
    await deps.onReady?.(container)
    return { status: 201, container }
  }
  const assignment = { status: 202 as const, container: revive<Container>(result.container), job: revive<Job>(result.job) }
  try {
    await enqueueStart(deps.queue, { containerId: assignment.container.id, jobId: assignment.job.id, secret })
  } catch (err) {
    // The job is committed; the queue is away. The reaper enqueues it (with a new secret) once it is back.
    deps.log?.warn({ err, jobId: assignment.job.id }, 'start job committed but not queued: left to the reaper')
    await repo.updateJob(db, assignment.job.id, { needs_enqueue: true, message: 'queued (waiting for the job queue)' })
  }
  return assignment
}

/**
 * A new container row (state `creating`) and its start job, in the caller's transaction; the caller
 * enqueues the job after commit (`enqueueStart`). The container's secret is stored hashed.
 */
export async function createStartingContainer (
  trx: Transaction<DB>,
  values: { user_id: string | null, app_id: string, region_code: string, dpi?: number | undefined, secret: string },
  startTimeoutMs: number
) {
  const { rows } = await sql<{ created: { container: Record<string, unknown>, job: Record<string, unknown> } }>`select fractal_create_container(
    ${values.user_id}::uuid, ${values.app_id}, ${values.region_code}, ${values.dpi ?? null}::integer,
    ${randomBytes(16).toString('hex')}, ${hashToId(values.secret)}, ${new Date(Date.now() + startTimeoutMs)}::timestamptz
  ) as created`.execute(trx)
  return { container: revive<Container>(rows[0]!.created.container), job: revive<Job>(rows[0]!.created.job) }
}

export function enqueueStart (queue: JobQueue, payload: StartContainerPayload) {
  return queue.enqueue<StartContainerPayload>(startJobOf(payload), payload, { jobId: payload.jobId, retries: 3 })
}
