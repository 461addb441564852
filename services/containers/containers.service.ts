import { randomBytes, timingSafeEqual } from 'node:crypto'
import { sql, type Kysely, type Transaction } from 'kysely'
import type { Container, ContainerState, DB, Job } from '../../db/types.js'
import { UnstorableValue, storable } from '../errors.js'
import type { entitlementTerms } from '../billing/billing.service.js'
import { Batcher } from '../batcher.js'
import { hashToId, newSecret } from '../hashing.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import type { JobQueue } from '../queue.js'
import { problemOf } from '../sql-errors.js'
import {
  AdminOnly, ContainerNotFound, PoolNotFound, IdempotencyMismatch, JobNotFound,
  WrongContainerSecret
} from './containers.errors.js'
import * as repo from './containers.repository.js'
import { warmPools } from './containers.warm-pools.js'
import { rankRegions, type Location } from './geo.js'
import type { CloudProvider } from './provider.js'
import type { HostAgentClient } from '../hosts/agent-client.js'
import { recordAudit } from '../audit/audit.service.js'

export interface StartContainerPayload {
  containerId: string
  jobId: string
  /** The container's secret, handed to the task at RunTask (only its hash is stored). */
  secret: string
  /** Continuations of one start job (each a delayed queue job of its own). */
  step?: number
  /** Consecutive throttling/5xx answers: the backoff grows with them. */
  transientFailures?: number
}
export interface StopContainerPayload { containerId: string, jobId: string }

export const startContainerJob = { family: 'containers', name: 'startContainer' } as const
export const stopContainerJob = { family: 'containers', name: 'stopContainer' } as const

export interface ContainerDeps {
  queue: JobQueue
  /**
   * Billing enforced: the terms fractal_entitlement decides with (inside the assignment's round trip:
   * payment_required when they may not stream, else the plan's limits) and where to send them to pay.
   * None: no plan limits.
   */
  entitlement?: { terms: NonNullable<ReturnType<typeof entitlementTerms>>, appUrl: string }
  /** A container became ready for its user (a warm claim, a finished start): its host agent hears of it. */
  onReady?: (container: Container) => Promise<void>
  log?: { warn (obj: object, msg: string): void }
  /** How long a start may take before the job fails (`start_timeout`). */
  startTimeoutMs: number
  /** Assignments batched with concurrent ones (assignmentBatcher); absent: each in a call of its own. */
  assignments?: Batcher<AssignCall, AssignAnswer>
}

/** What ends a start: the store, and the provider that stops a task left behind. */
export interface StartEnder {
  db: Kysely<DB>
  provider: CloudProvider
}

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
  input: { app: string, region?: string, dpi?: number, near?: Location | null }
): Promise<Assignment> {
  // A value the batch's jsonb would refuse fails alone, before it joins one (with other users' assignments).
  if (![idempotencyKey, input.app, input.region, input.dpi].every(storable)) throw new UnstorableValue()
  const secret = newSecret()
  // Near the client: the open regions in order of preference; the function takes the first the plan allows.
  const prefer = !input.region && input.near ? rankRegions(await repo.listOpenOffers(db, input.app), input.near).map((o) => o.region_code) : null
  const call: AssignCall = {
    user: userId,
    key: idempotencyKey,
    hash: hashToId(JSON.stringify({ app: input.app, region: input.region ?? null, dpi: input.dpi ?? null })),
    app: input.app,
    region: input.region ?? null,
    dpi: input.dpi ?? null,
    aesKey: randomBytes(16).toString('hex'),
    secretHash: hashToId(secret),
    deadline: new Date(Date.now() + deps.startTimeoutMs).toISOString(),
    terms: deps.entitlement?.terms ?? null,
    prefer
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
  return queue.enqueue<StartContainerPayload>(startContainerJob, payload, { jobId: payload.jobId, retries: 3 })
}

export const sendStartValuesJob = { family: 'containers', name: 'sendStartValues' } as const

/** Tells the container's host agent who uses it now (retried by the queue; a container gone meanwhile is skipped). */
export async function sendStartValues (
  db: Kysely<DB>, agent: HostAgentClient, containerId: string,
  storageTokens: (userId: string) => Promise<Array<{ provider: string, accessToken: string }>> = async () => []
) {
  const container = await repo.findContainer(db, containerId)
  if (!container || container.state !== 'in_use' || !container.user_id || !container.host_ip || container.port_32262 === null) return { skipped: true }
  await agent.setStartValues(container.host_ip, { containerId: container.id, userId: container.user_id, hostPort: container.port_32262, dpi: container.dpi })
  // The user's cloud storage, with tokens refreshed as needed: each mount the agent confirms is recorded.
  const mounted: string[] = []
  for (const { provider, accessToken } of await storageTokens(container.user_id)) {
    await agent.mountStorage(container.host_ip, { containerId: container.id, hostPort: container.port_32262, provider, accessToken })
    mounted.push(provider)
  }
  if (mounted.length > 0) await repo.updateContainer(db, container.id, { storage_mounts: mounted })
  return { sent: true, mounted }
}

/**
 * A start that will not finish: the container fails with the reason, its job fails with a stable code,
 * in one transaction; then the task it may have started is stopped. Answers `{ failed: code }`.
 */
export async function failStart (deps: StartEnder, container: Container, jobId: string | null, code: string, reason: string) {
  const message = reason.slice(0, 500)
  const failed = await deps.db.transaction().execute(async (trx) => {
    const row = await trx.updateTable('container').set({ state: 'failed', failure_reason: message, updated_at: sql`now()` })
      .where('id', '=', container.id).where('state', 'in', ['creating', 'starting']).returningAll().executeTakeFirst()
    if (row) await repo.insertContainerEvent(trx, { container_id: container.id, from_state: container.state, to_state: 'failed', job_id: jobId, reason: message })
    if (jobId) await repo.updateJob(trx, jobId, { state: 'failed', progress: 100, error_code: code, message })
    return row
  })
  const task = failed?.task_arn ?? container.task_arn
  if (task) {
    const cluster = failed?.cluster_id ?? container.cluster_id
    const name = cluster ? (await repo.findClusterById(deps.db, cluster))?.name : undefined
    await deps.provider.stopTask(container.region_code, name ?? `fractal-${container.region_code}-1`, task, reason.slice(0, 255)).catch(() => {})
  }
  return { failed: code }
}

/**
 * The start's last step, when the task runs and the container has pinged (whichever comes second calls
 * it): the container becomes ready and its start job succeeds, together. False when not both yet.
 */
export async function completeStartIfPinged (db: Kysely<DB>, containerId: string): Promise<Container | null> {
  return db.transaction().execute(async (trx) => {
    const ready = await repo.finishStart(trx, containerId)
    if (!ready) return null
    await repo.insertContainerEvent(trx, { container_id: ready.id, from_state: 'starting', to_state: ready.state, job_id: ready.start_job_id, reason: 'first ping' })
    if (ready.start_job_id) await repo.updateJob(trx, ready.start_job_id, { state: 'succeeded', progress: 100, message: 'running', result: JSON.stringify({ containerId: ready.id }) })
    return ready
  })
}

export async function getOwnContainer (db: Kysely<DB>, userId: string, id: string): Promise<Container> {
  const container = await repo.findContainer(db, id)
  // Another user's container is "not found": its existence is none of the caller's business.
  if (!container || container.user_id !== userId) throw new ContainerNotFound(id)
  return container
}

export interface ContainerFilters { limit: number, cursor?: string, state?: ContainerState, app?: string, region?: string, all?: boolean, user?: string }

/** The caller's containers, or (admins, `all`) everyone's; newest first, keyset-paginated. */
export async function listContainers (db: Kysely<DB>, principal: { userId: string, role: string }, query: ContainerFilters) {
  if ((query.all || query.user) && principal.role !== 'admin') throw new AdminOnly('list other users\' containers')
  if (query.user && !query.all) throw new AdminOnly('filter by user without all=true')
  const owner = query.all ? query.user ?? null : principal.userId
  const rows = await repo.listContainers(db, {
    owner, state: query.state ?? null, app: query.app ?? null, region: query.region ?? null
  }, { limit: query.limit + 1, before: query.cursor ? decodeKeyset(query.cursor) : null })
  return pageOf(rows, query.limit)
}

export async function listWarmPools (db: Kysely<DB>, filters: { app?: string, region?: string }) {
  const pools = await warmPools(db, filters)
  return pools.map((p) => ({ app: p.app_id, region: p.region_code, target: p.warm_pool_target, ready: Number(p.ready), starting: Number(p.starting) }))
}

/** Sets the target the warm-pool schedule keeps (audited); the schedule does the rest. */
export async function setWarmPoolTarget (db: Kysely<DB>, actorId: string, app: string, region: string, target: number) {
  await db.transaction().execute(async (trx) => {
    const before = await trx.selectFrom('app_region').select('warm_pool_target').where('app_id', '=', app).where('region_code', '=', region).forUpdate().executeTakeFirst()
    if (!before) throw new PoolNotFound(app, region)
    await trx.updateTable('app_region').set({ warm_pool_target: target }).where('app_id', '=', app).where('region_code', '=', region).execute()
    await recordAudit(trx, { action: 'warm_pool.target_set', actorId, target: { type: 'warm_pool', id: `${app}/${region}` }, details: { from: before.warm_pool_target, to: target } })
  })
  const [pool] = await listWarmPools(db, { app, region })
  return pool!
}

export async function updateContainer (db: Kysely<DB>, userId: string, id: string, changes: { useStun?: boolean, dpi?: number }): Promise<Container> {
  await getOwnContainer(db, userId, id)
  const updated = await repo.updateContainer(db, id, {
    ...(changes.useStun !== undefined ? { use_stun: changes.useStun } : {}),
    ...(changes.dpi !== undefined ? { dpi: changes.dpi } : {})
  })
  return updated!
}

/** Queues a stop job for one of the user's containers (idempotent: a stopped one gets an already-done job). */
export async function stopContainer (db: Kysely<DB>, deps: ContainerDeps, userId: string, id: string): Promise<Job> {
  return queueStop(db, deps, await getOwnContainer(db, userId, id))
}

/** The container asked to be shut down (its own secret): the same stop job, owned by its user. */
export async function shutdownContainer (db: Kysely<DB>, deps: ContainerDeps, container: Container): Promise<Job> {
  return queueStop(db, deps, container)
}

/** Cancels a start job: its container is stopped; an ended job is returned as it is. */
export async function cancelJob (db: Kysely<DB>, deps: ContainerDeps, principal: { userId: string, role: string }, id: string): Promise<Job> {
  const job = await getJob(db, principal, id)
  if (job.kind !== 'start_container' || job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return job
  await repo.updateJob(db, id, { state: 'cancelled', message: 'cancelled', progress: 100 })
  const ref = await repo.containerOfJob(db, id)
  const container = ref ? await repo.findContainer(db, ref.container_id) : undefined
  if (container) await queueStop(db, deps, container)
  return (await repo.findJob(db, id))!
}

/** Cluster deletion with force: every live container of the cluster is stopped. */
export async function stopContainersOfCluster (db: Kysely<DB>, deps: ContainerDeps, clusterId: string) {
  const rows = await db.selectFrom('container').selectAll().where('cluster_id', '=', clusterId)
    .where('state', 'in', ['creating', 'starting', 'available', 'in_use']).execute()
  for (const container of rows) await queueStop(db, deps, container)
}

/** Account deletion step: every live container of the account is stopped. */
export async function stopAllOf (db: Kysely<DB>, deps: ContainerDeps, userId: string) {
  for (const { id } of await repo.liveContainersOf(db, userId)) {
    const container = await repo.findContainer(db, id)
    if (container) await queueStop(db, deps, container)
  }
}

async function queueStop (db: Kysely<DB>, deps: ContainerDeps, container: Container): Promise<Job> {
  const userId = container.user_id
  const id = container.id
  const done = container.state === 'stopped' || container.state === 'failed'
  const job = await db.transaction().execute(async (trx) => {
    const job = await repo.insertJob(trx, { kind: 'stop_container', owner_id: userId, message: done ? 'already stopped' : 'queued' })
    if (done) {
      await repo.updateJob(trx, job.id, { state: 'succeeded', progress: 100 })
      return { ...job, state: 'succeeded' as const, progress: 100 }
    }
    return job
  })
  if (!done) {
    try {
      await deps.queue.enqueue<StopContainerPayload>(stopContainerJob, { containerId: id, jobId: job.id }, { jobId: job.id, retries: 5 })
    } catch (err) {
      // No half-written stop: the job says so and the caller gets 503 (stopping again is idempotent).
      await repo.updateJob(db, job.id, { state: 'failed', progress: 100, error_code: 'queue_unavailable', message: 'the job queue is unavailable; try again' })
      throw err
    }
  }
  return job
}

export async function getJob (db: Kysely<DB>, principal: { userId: string, role: string }, id: string): Promise<Job> {
  const job = await repo.findJob(db, id)
  if (!job || (job.owner_id !== principal.userId && principal.role !== 'admin')) throw new JobNotFound(id)
  return job
}

/** The container's own credential: the secret it was started with, compared in constant time. */
export async function authenticateContainer (db: Kysely<DB>, id: string, secret: string | undefined): Promise<Container> {
  // Checked before the request is validated: an id that is not one never reaches the database.
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new WrongContainerSecret()
  const container = await repo.findContainer(db, id)
  const expected = Buffer.from(container?.secret_hash ?? 'x'.repeat(43))
  const given = Buffer.from(hashToId(secret ?? ''))
  if (!container || !secret || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new WrongContainerSecret()
  return container
}

/**
 * A ping: the container is alive. `available` says no client is connected: a change of it writes the
 * logon/logoff history (container_session). A starting container's first ping completes its start.
 */
export async function ping (db: Kysely<DB>, deps: Pick<ContainerDeps, 'onReady'>, container: Container, available: boolean) {
  const connected = !available
  await db.transaction().execute(async (trx) => {
    await repo.updateContainer(trx, container.id, { last_ping_at: new Date(), client_connected: connected })
    if (connected && !container.client_connected) await repo.openSession(trx, container.id, container.user_id)
    if (!connected && container.client_connected) await repo.closeSessions(trx, container.id)
  })
  if (container.state === 'starting') {
    const ready = await completeStartIfPinged(db, container.id)
    if (ready) await deps.onReady?.(ready)
  }
}

export interface JobEvent { id: string, event: 'progress' | 'succeeded' | 'failed' | 'cancelled', job: Job }

/** Where a process hears that a job changed, whichever process changed it. */
export interface JobFeed {
  /**
   * Calls `listener` with the job's row each time it may have changed. Rows come from reads made one after
   * the other, each after the change it follows: the last one given is the latest. Returns the stop.
   */
  watch (id: string, listener: (job: Job) => void): () => void
  /** Reads the job again for its watchers. */
  refresh (id: string): void
}

/** The jobs with these ids (those that exist), in one query. */
export async function jobsByIds (db: Kysely<DB>, ids: readonly string[]): Promise<Job[]> {
  return repo.findJobs(db, ids)
}

const isTerminal = (job: Job) => job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled'
// The terminal event's id is one past its update time: a client that saw a progress event of the same
// millisecond still gets it when it resumes, and one that saw it does not get it twice.
const versionOf = (job: Job) => job.updated_at.getTime() + (isTerminal(job) ? 1 : 0)

/**
 * The job's changes as they happen: each new version once (its update time is the event id, so a client
 * resuming with Last-Event-ID gets only newer ones), then the terminal state (id: its update time + 1),
 * then the end. `null` is a keep-alive tick after `keepAliveMs` of quiet. Changes come from `feed`, not from
 * reading the row per stream; the feed is watched before the row is first read, so a change committed
 * between the two is not missed. Stops when `signal` aborts.
 */
export async function * jobEvents (db: Kysely<DB>, feed: JobFeed, principal: { userId: string, role: string }, id: string, lastEventId: string | undefined, signal: AbortSignal, options = { keepAliveMs: 15_000 }): AsyncGenerator<JobEvent | null> {
  let heard: Job | undefined
  let wake: (() => void) | undefined
  const stop = feed.watch(id, (job) => {
    heard = job
    wake?.()
  })
  const onAbort = () => wake?.()
  signal.addEventListener('abort', onAbort)
  try {
    let job = await getJob(db, principal, id)
    // A row the feed gave during that read may be older or newer than it: one more read settles it.
    if (heard) {
      heard = undefined
      feed.refresh(id)
    }
    let last = lastEventId ? Number(lastEventId) : 0
    let sent = false
    let sentAt = Date.now()
    while (!signal.aborted) {
      if (heard) job = heard
      heard = undefined
      const version = versionOf(job)
      if (isTerminal(job)) {
        // Update times are their transaction's start: an end can be stamped before a progress event this
        // stream already sent. It is sent all the same, after it. (Stamped at or before a Last-Event-ID
        // and nothing sent here: the client saw it before it reconnected.)
        if (version > last || sent) yield { id: String(Math.max(version, last + 1)), event: job.state as JobEvent['event'], job }
        return
      }
      if (version > last) {
        last = version
        sent = true
        sentAt = Date.now()
        yield { id: String(version), event: 'progress', job }
      }
      if (Date.now() - sentAt >= options.keepAliveMs) {
        sentAt = Date.now()
        yield null
      }
      // Heard while an event was being written out: no wait.
      if (heard || signal.aborted) continue
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        wake = resolve
        timer = setTimeout(resolve, options.keepAliveMs - (Date.now() - sentAt))
      })
      clearTimeout(timer)
      wake = undefined
    }
  } finally {
    stop()
    signal.removeEventListener('abort', onAbort)
  }
}
