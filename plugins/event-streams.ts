import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import type { Redis } from 'ioredis'
import { Gauge } from 'prom-client'
import { DomainError } from '../services/errors.js'

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The operation answers `text/event-stream`: each answer holds a stream slot while it is open. */
    eventStream?: boolean
  }
  interface FastifyRequest {
    /** The stream of an event-stream operation; its signal aborts when the stream must end (see below). */
    eventStream: { signal: AbortSignal } | null
  }
  interface FastifyInstance {
    /** Streams open in this process. */
    eventStreams: { readonly open: number }
  }
}

/** What `take` found: a slot taken, none left, or the store unreachable (admitted, nothing to give back). */
export type Take = 'taken' | 'full' | 'unknown'

/** Stream slots per owner (a user), shared by every process. */
export interface SlotStore {
  /** Takes a slot of `owner` for stream `id`, unless `max` are held. */
  take (owner: string, id: string): Promise<Exclude<Take, 'unknown'>>
  give (owner: string, id: string): Promise<void>
  /** Extends the slots of streams still open; answers the ids whose slot was gone (expired meanwhile). */
  keep (held: ReadonlyArray<{ owner: string, id: string }>): Promise<string[]>
}

// KEYS[1]: the owner's streams (id → expiry); ARGV: now, expiry, max, id, ttl. Expired slots (a process that
// died without giving them back) are dropped before counting, in the same step as the count and the take.
const takeScript = `
redis.call('zremrangebyscore', KEYS[1], '-inf', ARGV[1])
if redis.call('zcard', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[2], ARGV[4])
redis.call('pexpire', KEYS[1], ARGV[5])
return 1`
// ARGV: expiry, id, ttl. A slot that is gone stays gone: re-adding it could exceed the limit.
const keepScript = `
if not redis.call('zscore', KEYS[1], ARGV[2]) then return 0 end
redis.call('zadd', KEYS[1], ARGV[1], ARGV[2])
redis.call('pexpire', KEYS[1], ARGV[3])
return 1`

interface SlotCommands {
  streamSlotTake (key: string, now: number, expiry: number, max: number, id: string, ttlMs: number): Promise<number>
  streamSlotKeep (key: string, expiry: number, id: string, ttlMs: number): Promise<number>
}

/**
 * Slots in Redis, one sorted set per owner: a slot lives `ttlMs` unless its process keeps it (every third of
 * that), so the slots of a process that crashed free themselves. `now` is the clock (tests move it).
 */
export function redisSlots (redis: Redis, options: { max: number, ttlMs: number, now?: () => number }): SlotStore {
  const now = options.now ?? Date.now
  if (!('streamSlotTake' in redis)) {
    redis.defineCommand('streamSlotTake', { numberOfKeys: 1, lua: takeScript })
    redis.defineCommand('streamSlotKeep', { numberOfKeys: 1, lua: keepScript })
  }
  const commands = redis as unknown as SlotCommands
  const keyOf = (owner: string) => `streams:${owner}`
  return {
    async take (owner, id) {
      const at = now()
      return await commands.streamSlotTake(keyOf(owner), at, at + options.ttlMs, options.max, id, options.ttlMs) === 1 ? 'taken' : 'full'
    },
    async give (owner, id) {
      await redis.zrem(keyOf(owner), id)
    },
    async keep (held) {
      const expiry = now() + options.ttlMs
      const kept = await Promise.all(held.map(({ owner, id }) => commands.streamSlotKeep(keyOf(owner), expiry, id, options.ttlMs)))
      return held.filter((_, i) => kept[i] === 0).map(({ id }) => id)
    }
  }
}

/** The same in this process (embedded: there is no other). */
export function memorySlots (options: { max: number }): SlotStore {
  const held = new Map<string, Set<string>>()
  return {
    async take (owner, id) {
      const ids = held.get(owner) ?? new Set()
      if (ids.size >= options.max) return 'full'
      held.set(owner, ids.add(id))
      return 'taken'
    },
    async give (owner, id) {
      const ids = held.get(owner)
      ids?.delete(id)
      if (ids?.size === 0) held.delete(owner)
    },
    async keep () { return [] }
  }
}

const slotTtlMs = 60_000
/** Seconds a refused caller is told to wait: streams end when their job does, often within seconds. */
const retryAfter = 5

interface Stream { owner: string, id: string, abort: AbortController, held: boolean }

function ownerOf (request: FastifyRequest): string {
  const principal = request.principal
  if (principal?.kind === 'user') return `user:${principal.userId}`
  if (principal?.kind === 'partner') return `partner:${principal.partnerId}`
  return `ip:${request.ip}`
}

/**
 * Caps server-sent event streams: EVENT_STREAMS_PER_USER open at once per user across every process
 * (Redis), EVENT_STREAMS_PER_PROCESS in this process (memory); past either, 429 `rate_limited` with
 * Retry-After. Applies to every operation whose route says `config.eventStream` (openapi-routes sets it on
 * each operation answering `text/event-stream`), after its security. A slot is held from admission until
 * the response closes, whatever closes it: the client leaving (even before the stream started), the stream
 * ending with its job, an error answer, or shutdown, which ends every stream first (`preClose`; clients
 * resume elsewhere with Last-Event-ID). Redis away: the per-user count is skipped, the per-process cap holds.
 */
export default fp(async function eventStreamsPlugin (app) {
  const { perUser, perProcess } = app.config.eventStreams
  const slots = app.hasDecorator('redis') ? redisSlots(app.redis, { max: perUser, ttlMs: slotTtlMs }) : memorySlots({ max: perUser })
  const live = new Set<Stream>()
  const giving = new Set<Promise<void>>()
  let open = 0
  let closing = false

  const refuse = (detail: string) => new DomainError('rate_limited', 'Too many event streams', detail, { retryAfter })

  async function admit (request: FastifyRequest, reply: FastifyReply) {
    // Counted before any await: concurrent requests cannot all see the last free place.
    if (open >= perProcess) throw refuse('This server has as many event streams open as it takes. Try again shortly.')
    open++
    const stream: Stream = { owner: ownerOf(request), id: randomUUID(), abort: new AbortController(), held: false }
    live.add(stream)
    const taken: Promise<Take> = slots.take(stream.owner, stream.id).catch((err: unknown) => {
      request.log.warn({ err }, 'event stream slots unreachable: per-user limit skipped')
      return 'unknown'
    })
    let ended = false
    const end = () => {
      if (ended) return
      ended = true
      open--
      live.delete(stream)
      stream.abort.abort()
      // Given back after the take has landed, so a client that leaves at once cannot leave a slot behind.
      const given = taken.then((t) => t === 'taken' ? slots.give(stream.owner, stream.id) : undefined)
        .catch((err: unknown) => app.log.warn({ err }, 'event stream slot not given back (it expires)'))
        .finally(() => giving.delete(given))
      giving.add(given)
    }
    reply.raw.on('close', end)
    const outcome = await taken
    if (outcome === 'full') {
      end()
      throw refuse(`You have ${perUser} event streams open, the most at once. Close one, or try again shortly.`)
    }
    stream.held = outcome === 'taken'
    // The client left before the listener above was there; or shutdown began during the admission.
    if (reply.raw.destroyed) end()
    if (closing) stream.abort.abort()
    request.eventStream = { signal: stream.abort.signal }
  }

  app.decorateRequest('eventStream', null)
  app.decorate('eventStreams', { get open () { return open } })
  app.addHook('onRoute', (route) => {
    if (!route.config?.eventStream) return
    route.preHandler = [...(route.preHandler ? [route.preHandler].flat() : []), admit]
  })

  const keeper = app.hasDecorator('redis')
    ? setInterval(() => {
      // Only slots whose take has landed: a take in flight is not a lost slot.
      const held = [...live].filter((s) => s.held)
      slots.keep(held).then((ids) => {
        const lost = new Set(ids)
        for (const stream of held) if (lost.has(stream.id)) stream.abort.abort()
      }, (err: unknown) => app.log.warn({ err }, 'event stream slots not kept'))
    }, slotTtlMs / 3)
    : undefined
  keeper?.unref()

  new Gauge({ // eslint-disable-line no-new
    name: 'event_streams_open',
    help: 'Server-sent event streams open in this process',
    registers: [app.metrics.registry],
    collect () { this.set(open) }
  })

  app.addHook('preClose', async () => {
    closing = true
    for (const stream of live) stream.abort.abort()
  })
  app.addHook('onClose', async () => {
    clearInterval(keeper)
    // Before Redis closes (its onClose runs after this one).
    await Promise.allSettled([...giving])
  })
}, { fastify: '5.x', name: 'event-streams', dependencies: ['config', 'errors', 'redis', 'metrics'] })
