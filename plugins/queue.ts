import { randomUUID } from 'node:crypto'
import { createRequire } from 'node:module'
import BeeQueue from 'bee-queue'
import fp from 'fastify-plugin'
import type { FastifyBaseLogger } from 'fastify'
import {
  queueFamilies, type EnqueueOptions, type JobContext, type JobDefinition, type JobInterceptor, type JobQueue, type QueueCounts, type QueueFamily
} from '../services/queue.js'

// Retry defaults for every job: 3 retries, 5 minutes per attempt; exponential backoff from
// QUEUE_RETRY_BACKOFF_MS (1 s).
const defaults = { retries: 3, timeoutMs: 5 * 60_000 }

interface Payload { name: string, data: unknown }

export interface QueueRuntime extends JobQueue {
  readonly kind: 'bee-queue' | 'in-process'
  define (...definitions: JobDefinition[]): void
  /** Wraps every later job attempt in `interceptor` (the first added is the outermost). */
  aroundJob (interceptor: JobInterceptor): void
  /** Resolves once connected (the producers of every family). */
  ready (): Promise<void>
  /** Starts processing every family (the worker role). */
  startWorker (concurrency: number): void
  close (): Promise<void>
}

declare module 'fastify' {
  interface FastifyInstance {
    queue: QueueRuntime
  }
}

function dispatcher (definitions: Map<string, JobDefinition>, interceptors: JobInterceptor[], family: QueueFamily, log: FastifyBaseLogger) {
  return async (payload: Payload, ctx: JobContext) => {
    const definition = definitions.get(`${family}/${payload.name}`)
    const attempt = { family, name: payload.name, id: ctx.id, lastAttempt: ctx.lastAttempt }
    const run = interceptors.reduceRight<() => Promise<unknown>>(
      (next, intercept) => () => intercept(attempt, next),
    async () => {
      if (!definition) throw new Error(`queue ${family}: no job named ${payload.name}`)
      return definition.handle(payload.data, ctx)
    })
    const started = performance.now()
    try {
      return await run()
    } finally {
      log.debug({ job: ctx.id, family, name: payload.name, ms: Math.round(performance.now() - started) }, 'job done')
    }
  }
}

// Moves a job its worker could not finish from the active list back to the front of the waiting list (the
// next one taken), unless it has left the active list meanwhile; the same move bee-queue's stall check makes.
const handBackScript = 'if redis.call("lrem", KEYS[1], 0, ARGV[1]) > 0 then redis.call("rpush", KEYS[2], ARGV[1]) return 1 end return 0'

interface BeeOptions {
  /** A worker refreshes its jobs every half of this; a job nobody refreshed for that long is stalled. */
  stallIntervalMs: number
  retryBackoffMs: number
  /** How long close() lets running jobs finish before it hands them back. */
  drainMs: number
}

// node_redis (bee-queue's client) gives up reconnecting after an hour of retries in one outage
// (connect_timeout), leaving its queue dead until a restart; the longest timer Node has instead.
const neverGiveUpMs = 2 ** 31 - 1

/**
 * The node_redis options of a bee-queue client: reconnect every 100 ms more, at most every 2 s, for as long
 * as Redis is away, and log the outage (when it begins, then every minute or so) rather than emitting an
 * 'error' per attempt. `offlineQueue`: commands wait for Redis (workers) or fail at once (producers).
 */
export function beeRedisOptions (url: string, log: FastifyBaseLogger, context: Record<string, string>, offlineQueue: boolean) {
  return {
    url,
    enable_offline_queue: offlineQueue,
    connect_timeout: neverGiveUpMs,
    retry_strategy ({ attempt, error }: { attempt: number, error?: Error }) {
      if (attempt === 1 || attempt % 30 === 0) log.warn({ err: error, attempt, ...context }, 'queue: Redis connection lost; reconnecting')
      return Math.min(attempt * 100, 2000)
    }
  }
}

/**
 * Every bee-queue queue forwards its clients' errors as its own 'error' event, which, unheard, is thrown
 * and ends the process (issue 19): each one we make is heard here.
 */
export function logQueueErrors<Q extends BeeQueue<any>> (queue: Q, log: FastifyBaseLogger, context: Record<string, string>): Q {
  queue.on('error', (err) => log.error({ err, ...context }, 'queue error'))
  return queue
}

// bee-queue's Lua scripts (bee-queue has no public way to reload them).
const beeScripts = createRequire(import.meta.url)('bee-queue/lib/lua/index.js') as { buildCache (client: unknown): Promise<unknown> }
const isNoScript = (err: unknown) => /NOSCRIPT/.test((err as Error)?.message ?? '')

/**
 * bee-queue loads its Lua scripts when a queue first connects and calls them by hash ever after; a Redis that
 * restarted (or failed over) has forgotten them, and every call then fails with NOSCRIPT until the process
 * restarts (bee-queue/bee-queue#489). They are loaded again on every reconnection of the queue's client;
 * answers a function that loads them now (for a call that met NOSCRIPT before the reconnection's load).
 */
export function reloadScriptsOnReconnect (queue: BeeQueue<any>, log: FastifyBaseLogger, context: Record<string, string>): () => Promise<void> {
  const client = () => (queue as unknown as { client: { on (event: 'ready', fn: () => void): void } | null }).client
  const load = async () => { await beeScripts.buildCache(client()) }
  queue.ready().then(() => {
    // bee-queue's own load followed the first 'ready'; this hears the later ones.
    client()?.on('ready', () => {
      load().then(() => log.info(context, 'queue: Redis is back; scripts loaded'), (err) => log.warn({ err, ...context }, 'queue: scripts not loaded after reconnecting'))
    })
  }, () => {})
  return load
}

function createBeeQueues (url: string, prefix: string, log: FastifyBaseLogger, options: BeeOptions): QueueRuntime {
  const definitions = new Map<string, JobDefinition>()
  const interceptors: JobInterceptor[] = []
  const { retryBackoffMs } = options
  const loaders = new WeakMap<BeeQueue, () => Promise<void>>()
  const make = (family: QueueFamily, isWorker: boolean) => {
    const role = isWorker ? 'worker' : 'producer'
    const queue = logQueueErrors(new BeeQueue<Payload>(family, {
      prefix: `${prefix}bq`,
      // Producers fail fast while Redis is away (the caller decides: 503, or leave it to a reaper) instead of
      // holding the request until Redis returns.
      redis: beeRedisOptions(url, log, { family, role }, isWorker) as never,
      isWorker,
      getEvents: false,
      sendEvents: false,
      activateDelayedJobs: isWorker,
      removeOnSuccess: true,
      removeOnFailure: false,
      // A worker that dies leaves its jobs stalled; another worker takes them back after one to two of these.
      stallInterval: options.stallIntervalMs
    }), log, { family, role })
    loaders.set(queue, reloadScriptsOnReconnect(queue, log, { family, role }))
    return queue
  }
  const producers = new Map(queueFamilies.map((f) => [f, make(f, false)]))
  const workers: BeeQueue[] = []
  // Jobs this process took whose outcome bee-queue has not recorded yet (family:id).
  const unfinished = new Map<string, { family: QueueFamily, id: string }>()
  let closing: Promise<void> | undefined
  const get = (family: QueueFamily) => producers.get(family)!

  return {
    kind: 'bee-queue',
    define (...defs) { for (const d of defs) definitions.set(`${d.family}/${d.name}`, d) },
    async ready () { await Promise.all([...producers.values()].map((q) => q.ready())) },
    aroundJob (interceptor) { interceptors.push(interceptor) },
    async enqueue (job, data, options: EnqueueOptions = {}) {
      const created = get(job.family).createJob({ name: job.name, data })
        .retries(options.retries ?? defaults.retries)
        .backoff('exponential', retryBackoffMs)
        .timeout(options.timeoutMs ?? defaults.timeoutMs)
      const id = options.jobId ?? randomUUID()
      created.setId(id)
      if (options.delayMs) created.delayUntil(Date.now() + options.delayMs)
      // bee-queue answers a null id when a job with this id exists: the enqueue was a no-op.
      try {
        await created.save()
      } catch (err) {
        // Redis came back without our scripts and this call came before their reload: load them, once more.
        if (!isNoScript(err)) throw err
        await loaders.get(get(job.family))!()
        await created.save()
      }
      return id
    },
    async counts (family) {
      const h = await get(family).checkHealth()
      return { waiting: h.waiting, active: h.active, delayed: h.delayed, failed: h.failed, succeeded: h.succeeded }
    },
    startWorker (concurrency) {
      for (const family of queueFamilies) {
        const queue = make(family, true)
        const run = dispatcher(definitions, interceptors, family, log)
        queue.process(concurrency, (job) => {
          unfinished.set(`${family}:${job.id}`, { family, id: String(job.id) })
          return run(job.data, {
            id: String(job.id),
            // bee-queue counts retries down as it makes them.
            lastAttempt: (job.options.retries ?? 0) <= 0,
            reportProgress: async (p) => { job.reportProgress(p) }
          })
        })
        // Emitted once the outcome is stored (a retry included): the job is no longer ours to hand back.
        queue.on('succeeded', (job) => { unfinished.delete(`${family}:${job.id}`) })
        queue.on('failed', (job, err) => {
          unfinished.delete(`${family}:${job.id}`)
          log.warn({ err, job: job.id, family }, 'job attempt failed')
        })
        // bee-queue looks for stalled jobs once at start only; a worker that died must not strand its jobs
        // until the next worker starts.
        queue.checkStalledJobs(Math.max(250, Math.floor(options.stallIntervalMs / 2)))
        queue.on('stalled', (id) => log.warn({ job: id, family }, 'stalled job taken back (its worker died)'))
        workers.push(queue)
      }
    },
    close () {
      closing ??= (async () => {
        // Workers first: they stop taking jobs, and running ones get the drain period to finish.
        await Promise.allSettled(workers.map((q) => q.close(options.drainMs)))
        // What is still running is handed back now, for another worker to continue at once, rather than left
        // for the stall check (jobs are idempotent: the next attempt finds what this one did).
        const left = [...unfinished.values()]
        await Promise.allSettled(left.map(async ({ family, id }) => {
          const producer = get(family) as unknown as { client: { eval (...args: unknown[]): void }, toKey (key: string): string }
          const moved = await new Promise((resolve, reject) => producer.client.eval(handBackScript, 2, producer.toKey('active'), producer.toKey('waiting'), id,
            (err: Error | null, n: number) => { if (err) reject(err); else resolve(n) }))
          log.info({ job: id, family, handedBack: moved === 1 }, 'job not finished at shutdown: handed back')
        }))
        await Promise.allSettled([...producers.values()].map((q) => q.close(1000)))
      })()
      return closing
    }
  }
}

interface MemoryJob { id: string, family: QueueFamily, payload: Payload, attemptsLeft: number, attempt: number, timeoutMs: number }

/** The same interface without Redis, for the embedded default: jobs live in this process only. */
function createMemoryQueues (log: FastifyBaseLogger, drainMs: number, retryBackoffMs: number): QueueRuntime {
  const definitions = new Map<string, JobDefinition>()
  const interceptors: JobInterceptor[] = []
  const counts = new Map(queueFamilies.map((f) => [f, { waiting: 0, active: 0, delayed: 0, failed: 0, succeeded: 0 }]))
  const waiting = new Map<QueueFamily, MemoryJob[]>(queueFamilies.map((f) => [f, []]))
  const known = new Set<string>()
  const timers = new Set<NodeJS.Timeout>()
  const active = new Set<Promise<void>>()
  let concurrency = 0
  let closed = false
  const running = new Map<QueueFamily, number>(queueFamilies.map((f) => [f, 0]))

  const later = (ms: number, fn: () => void) => {
    const t = setTimeout(() => { timers.delete(t); fn() }, ms)
    timers.add(t)
  }
  const push = (job: MemoryJob) => {
    waiting.get(job.family)!.push(job)
    counts.get(job.family)!.waiting++
    pump(job.family)
  }
  const attempt = async (job: MemoryJob, c: QueueCounts) => {
    const run = dispatcher(definitions, interceptors, job.family, log)
    let timer: NodeJS.Timeout | undefined
    try {
      await Promise.race([
        run(job.payload, { id: job.id, lastAttempt: job.attemptsLeft <= 0 || closed, reportProgress: async () => {} }),
        new Promise((_resolve, reject) => { timer = setTimeout(() => reject(new Error('job timed out')), job.timeoutMs) })
      ])
      c.succeeded++
    } catch (err) {
      log.warn({ err, job: job.id, family: job.family }, 'job attempt failed')
      if (job.attemptsLeft > 0 && !closed) {
        c.delayed++
        later(retryBackoffMs * 2 ** job.attempt, () => { c.delayed--; push({ ...job, attemptsLeft: job.attemptsLeft - 1, attempt: job.attempt + 1 }) })
      } else {
        c.failed++
      }
    } finally {
      clearTimeout(timer)
    }
  }
  const pump = (family: QueueFamily) => {
    if (closed || concurrency <= 0) return
    const list = waiting.get(family)!
    while (running.get(family)! < concurrency && list.length > 0) {
      const job = list.shift()!
      const c = counts.get(family)!
      c.waiting--
      c.active++
      running.set(family, running.get(family)! + 1)
      const p = attempt(job, c).finally(() => {
        c.active--
        running.set(family, running.get(family)! - 1)
        active.delete(p)
        pump(family)
      })
      active.add(p)
    }
  }

  return {
    kind: 'in-process',
    define (...defs) { for (const d of defs) definitions.set(`${d.family}/${d.name}`, d) },
    async ready () {},
    aroundJob (interceptor) { interceptors.push(interceptor) },
    async enqueue (job, data, options = {}) {
      const id = options.jobId ?? randomUUID()
      if (known.has(id)) return id
      known.add(id)
      const entry: MemoryJob = {
        id,
        family: job.family,
        payload: { name: job.name, data },
        attemptsLeft: options.retries ?? defaults.retries,
        attempt: 0,
        timeoutMs: options.timeoutMs ?? defaults.timeoutMs
      }
      if (options.delayMs) {
        const c = counts.get(job.family)!
        c.delayed++
        later(options.delayMs, () => { c.delayed--; push(entry) })
      } else {
        push(entry)
      }
      return id
    },
    async counts (family) { return { ...counts.get(family)! } },
    startWorker (n) {
      concurrency = n
      for (const family of queueFamilies) pump(family)
    },
    async close () {
      closed = true
      for (const t of timers) clearTimeout(t)
      // Running jobs get the drain period, as with Redis; in-process jobs have nobody to be handed back to.
      let timer: NodeJS.Timeout | undefined
      await Promise.race([Promise.allSettled([...active]), new Promise((resolve) => { timer = setTimeout(resolve, drainMs) })])
      clearTimeout(timer)
    }
  }
}

export default fp(async function queuePlugin (app) {
  const { url, prefix } = app.config.redis
  if (url !== null && !/^rediss?:\/\//.test(url)) throw new Error('queue: config.redis.url is not a redis:// URL')
  const queue = url
    ? createBeeQueues(url, prefix, app.log, { stallIntervalMs: app.config.worker.stallIntervalMs, retryBackoffMs: app.config.worker.retryBackoffMs, drainMs: app.config.http.shutdownDrainMs })
    : createMemoryQueues(app.log, app.config.http.shutdownDrainMs, app.config.worker.retryBackoffMs)
  app.decorate('queue', queue)
  app.addHook('onClose', async () => { await queue.close() })
  // Connected before the app serves: an enqueue must not wait for a first connection (later ones fail fast).
  await queue.ready()
}, { fastify: '5.x', name: 'queue', dependencies: ['config'] })

export type { QueueCounts }
