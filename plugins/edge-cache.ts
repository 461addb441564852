import { createHash } from 'node:crypto'
import { createStorage } from 'async-cache-dedupe'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'
import vary from 'vary'
import { purgeTagsJob, type PurgeTagsPayload } from '../services/cache/cache.jobs.js'
import type { CacheInvalidator } from '../services/cache/cache.js'

/** The `x-cache` extension of an operation. */
export interface CachePolicy {
  maxAge: number
  sMaxAge?: number
  staleWhileRevalidate?: number
  staleIfError?: number
  vary?: string[]
  /** Surrogate keys; `{field}` is filled from the response body, e.g. `app:{id}`. */
  tags?: string[]
  /** Per-user (an operation with `security`): the client may keep it, no shared cache may. */
  private?: boolean
}

declare module 'fastify' {
  interface FastifyContextConfig {
    cache?: CachePolicy
    /** The operation declares `security`: its answers are private. */
    secured?: boolean
  }
  interface FastifyInstance {
    /** Drops cached representations by tag, here, in the other processes and at the edge. */
    cache: CacheInvalidator
  }
}

/** A representation kept at the origin: the exact bytes, their validator and their tags. */
interface Representation { body: string, etag: string, contentType: string, tags: string[], expires: number }

const kState = Symbol('edge-cache')
interface RequestState { served?: Representation, pending?: { resolve (r: Representation | null): void }, generation: number, payload?: unknown }
type WithState = FastifyRequest & { [kState]?: RequestState }

const maxEntries = 1000
const notModifiedDrops = ['content-type', 'content-length', 'content-security-policy', 'referrer-policy', 'strict-transport-security', 'x-content-type-options', 'x-frame-options']

function cacheControl (p: CachePolicy): string {
  if (p.private) return `private, max-age=${p.maxAge}`
  const parts = ['public', `max-age=${p.maxAge}`]
  if (p.sMaxAge !== undefined) parts.push(`s-maxage=${p.sMaxAge}`)
  if (p.staleWhileRevalidate !== undefined) parts.push(`stale-while-revalidate=${p.staleWhileRevalidate}`)
  if (p.staleIfError !== undefined) parts.push(`stale-if-error=${p.staleIfError}`)
  return parts.join(', ')
}

/** A strong validator of the exact bytes we send. */
export function etagOf (payload: string | Buffer): string {
  return `"${createHash('sha1').update(payload).digest('base64url')}"`
}

/**
 * Adds `fields` to the answer's Vary, keeping those already there: @fastify/cors has put `Origin` there (its
 * Access-Control-Allow-Origin names the asking origin), and a shared cache must keep one copy per origin.
 */
export function addVary (reply: FastifyReply, fields: readonly string[]): void {
  const current = reply.getHeader('vary')
  reply.header('vary', vary.append(Array.isArray(current) ? current.join(', ') : String(current ?? ''), [...fields]))
}

function matches (ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag)
}

function tagsFor (templates: readonly string[], body: unknown): string[] {
  return templates.flatMap((template) => {
    if (!template.includes('{')) return [template]
    let complete = true
    const tag = template.replace(/\{(\w+)\}/g, (_m, field: string) => {
      const value = (body as Record<string, unknown> | null)?.[field]
      if (typeof value !== 'string' && typeof value !== 'number') complete = false
      return String(value)
    })
    return complete ? [tag] : []
  })
}

/**
 * Applies the policy an operation declares in `x-cache`: Cache-Control (and CDN-Cache-Control), a strong
 * ETag with 304 on If-None-Match, Vary, Surrogate-Key/xkey. Everything else is `no-store` (and `private`
 * behind auth).
 *
 * Public reads are also kept at the origin, in two layers. In this process for ORIGIN_CACHE_TTL_MS:
 * concurrent identical requests compute once, the ETag is computed once per representation, a 304 costs
 * no query. Behind it, in Redis for SHARED_CACHE_TTL_MS (async-cache-dedupe's Redis storage, which keeps
 * the tag → keys references): after a purge, many web processes ask Redis, and only the first to miss
 * computes. `app.cache.invalidate(tags)` drops both layers here and, through Redis pub/sub, in every
 * other process, then queues the edge purge (CACHE_PURGER).
 */
export default fp(async function edgeCachePlugin (app) {
  const ttlMs = app.config.cache.originTtlMs
  const cacheTags = app.config.cache.purger.kind === 'cloudflare'
  const store = new Map<string, Representation>()
  const pending = new Map<string, Promise<Representation | null>>()
  // Bumped by every invalidation: a read that started before it does not store what it computed.
  let generation = 0

  // The shared layer: only with Redis, and only where the local one is on (tests write rows directly).
  const sharedTtlS = Math.ceil(app.config.cache.sharedTtlMs / 1000)
  const shared = app.redis && ttlMs > 0 && sharedTtlS > 0
    ? createStorage('redis', { client: app.redis, log: app.log.child({ component: 'shared-cache' }), invalidation: { referencesTTL: Math.max(60, sharedTtlS * 2) } })
    : null
  const sharedKey = (url: string) => `edge:${url}`
  // Every representation also carries '*', so that everything can be dropped at once.
  const sharedRefs = (tags: readonly string[]) => ['edge:*', ...tags.map((t) => `edge:${t}`)]
  const fromShared = async (url: string): Promise<Representation | null> => {
    if (!shared) return null
    try {
      const rep = await shared.get(sharedKey(url)) as Representation | undefined
      return rep ? { ...rep, expires: Date.now() + Math.min(ttlMs, sharedTtlS * 1000) } : null
    } catch (err) {
      app.log.warn({ err }, 'shared cache unavailable: computing')
      return null
    }
  }
  const toShared = (url: string, rep: Representation, ttlS: number) => {
    if (!shared || ttlS <= 0) return
    const key = sharedKey(url)
    const storedAt = generation
    shared.set(key, { body: rep.body, etag: rep.etag, contentType: rep.contentType, tags: rep.tags }, ttlS, sharedRefs(rep.tags))
      // async-cache-dedupe writes the value, then (after a read) its tag references: a purge in between finds
      // no reference and leaves the copy for its whole TTL. A purge this process saw meanwhile (its own, or
      // another's through the broadcast) removes it once stored.
      .then(async () => { if (generation !== storedAt) await shared.remove(key) })
      .catch((err: unknown) => app.log.warn({ err }, 'shared cache unavailable: not stored'))
  }

  const dropLocal = (tags: readonly string[] | '*') => {
    generation++
    if (tags === '*') return store.clear()
    const wanted = new Set(tags)
    for (const [key, rep] of store) if (rep.tags.some((t) => wanted.has(t))) store.delete(key)
  }

  if (ttlMs > 0) await app.broadcast.subscribe('cache:invalidate', (tags) => { dropLocal(tags as string[] | '*') })

  const drop = async (tags: readonly string[] | '*') => {
    dropLocal(tags)
    if (shared) {
      try {
        await shared.invalidate(tags === '*' ? ['edge:*'] : sharedRefs(tags).slice(1))
      } catch (err) {
        app.log.warn({ err }, 'shared cache unavailable: its copies expire by themselves')
      }
    }
    if (ttlMs > 0) await app.broadcast.publish('cache:invalidate', tags)
    await app.queue.enqueue<PurgeTagsPayload>(purgeTagsJob, tags === '*' ? { tags: [], all: true } : { tags: [...tags] }, { retries: 5 })
  }
  app.decorate('cache', {
    purger: app.config.cache.purger.kind,
    async invalidate (tags: readonly string[]) {
      if (tags.length > 0) await drop(tags)
    },
    invalidateAll: () => drop('*')
  })

  const serve = (request: FastifyRequest, reply: FastifyReply, rep: Representation) => {
    (request as WithState)[kState]!.served = rep
    const ifNoneMatch = request.headers['if-none-match']
    if (ifNoneMatch && matches(ifNoneMatch, rep.etag)) return reply.code(304).send()
    return reply.code(200).type(rep.contentType).send(rep.body)
  }

  app.addHook('onRoute', (route) => {
    const policy = route.config?.cache
    const append = <K extends 'onRequest' | 'preSerialization' | 'onSend' | 'onResponse'>(name: K, hook: unknown) => {
      const existing = route[name] ? [route[name]].flat() : []
      route[name] = [...existing, hook] as never
    }
    if (!policy) {
      const store = route.config?.secured ? 'private, no-store' : 'no-store'
      append('onSend', (_request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
        if (!reply.hasHeader('cache-control')) reply.header('cache-control', store)
        done(null, payload)
      })
      return
    }
    const value = cacheControl(policy)
    const shared = !policy.private
    // RFC 9213: a cache reading CDN-Cache-Control ignores Cache-Control, so the stale directives go here too.
    const cdnValue = shared && policy.sMaxAge !== undefined
      ? [`max-age=${policy.sMaxAge}`, policy.staleWhileRevalidate !== undefined ? `stale-while-revalidate=${policy.staleWhileRevalidate}` : '', policy.staleIfError !== undefined ? `stale-if-error=${policy.staleIfError}` : ''].filter(Boolean).join(', ')
      : null
    const varyFields = [...(policy.vary ?? ['Accept-Encoding']), ...(shared ? [] : ['Authorization'])]
    // Vary as addVary makes it, per Vary already there (none, or CORS's Origin): parsed once per route.
    const varyMemo = new Map<string, string>()
    const addVaryOnce = (reply: FastifyReply) => {
      const current = reply.getHeader('vary')
      const was = Array.isArray(current) ? current.join(', ') : String(current ?? '')
      let value = varyMemo.get(was)
      if (value === undefined) {
        value = vary.append(was, [...varyFields])
        if (varyMemo.size < 16) varyMemo.set(was, value)
      }
      reply.header('vary', value)
    }
    const templates = shared ? policy.tags ?? [] : []
    const routeTtl = Math.min(ttlMs, policy.maxAge * 1000)
    // Only shared answers are kept at the origin (a private one is per user).
    const keep = shared && routeTtl > 0 && route.method === 'GET'

    // An answer sent here, in the tick of Node's 'request' event, goes out before Node marks the request
    // complete: plugins/security.ts closes the connection only for a request with a body still to come
    // (measured when it closed every one: each 304 reconnected, 2.5x the CPU per request).
    append('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
      const state: RequestState = { generation };
      (request as WithState)[kState] = state
      if (!keep) return
      const key = request.url
      const cached = store.get(key)
      if (cached && cached.expires > Date.now()) return serve(request, reply, cached)
      if (await miss(request, reply, state, key)) return reply
    })
    /** Whether it answered (from another request's computation or the shared layer). */
    const miss = async (request: FastifyRequest, reply: FastifyReply, state: RequestState, key: string): Promise<boolean> => {
      const inFlight = pending.get(key)
      if (inFlight) {
        const rep = await inFlight
        if (rep) serve(request, reply, rep)
        return rep !== null
      }
      let resolve!: (r: Representation | null) => void
      const promise = new Promise<Representation | null>((_resolve) => { resolve = _resolve })
      pending.set(key, promise)
      state.pending = {
        resolve: (rep) => {
          if (pending.get(key) === promise) pending.delete(key)
          resolve(rep)
        }
      }
      // Another process may have computed it since the last purge.
      const sharedRep = await fromShared(key)
      if (sharedRep && state.generation === generation) {
        if (store.size >= maxEntries) store.delete(store.keys().next().value!)
        store.set(key, sharedRep)
        state.pending.resolve(sharedRep)
        serve(request, reply, sharedRep)
        return true
      }
      return false
    }

    // Hooks that wait on nothing take a callback (an async one costs a promise per request).
    append('preSerialization', (request: FastifyRequest, _reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
      const state = (request as WithState)[kState]
      if (state) state.payload = payload
      done(null, payload)
    })

    append('onSend', (request: FastifyRequest, reply: FastifyReply, payload: unknown, done: (err: null, payload: unknown) => void) => {
      done(null, onSend(request, reply, payload))
    })
    const onSend = (request: FastifyRequest, reply: FastifyReply, payload: unknown): unknown => {
      const state = (request as WithState)[kState]
      const status = reply.statusCode
      if (status >= 400 || (status !== 200 && status !== 304)) {
        state?.pending?.resolve(null)
        // Misses get a short edge life, so a burst for a missing id does not reach us; failures none, and
        // a private operation's errors (a 401 for one caller) never reach a shared cache.
        reply.header('cache-control', !shared ? 'private, no-store' : status >= 500 || status === 429 ? 'no-store' : 'public, max-age=0, s-maxage=10')
        return payload
      }
      reply.header('cache-control', value)
      if (cdnValue) {
        reply.header('cdn-cache-control', cdnValue)
        reply.header('surrogate-control', cdnValue)
      }
      addVaryOnce(reply)

      let rep = state?.served
      if (!rep) {
        if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload
        const body = payload.toString()
        rep = {
          body,
          etag: etagOf(body),
          contentType: String(reply.getHeader('content-type') ?? 'application/json; charset=utf-8'),
          tags: tagsFor(templates, state?.payload),
          expires: Date.now() + routeTtl
        }
        if (keep && state && state.generation === generation) {
          if (store.size >= maxEntries) store.delete(store.keys().next().value!)
          store.set(request.url, rep)
          toShared(request.url, rep, Math.min(sharedTtlS, policy.maxAge))
        }
        state?.pending?.resolve(rep)
      }
      reply.header('etag', rep.etag)
      const ifNoneMatch = request.headers['if-none-match']
      if (status === 304 || (ifNoneMatch && matches(ifNoneMatch, rep.etag))) {
        // RFC 9110 §15.4.5: a 304 carries the cache metadata (Cache-Control, ETag, Vary, Date) and nothing
        // about the content; the security headers and surrogate keys went out with the 200.
        reply.code(304)
        for (const name of notModifiedDrops) reply.removeHeader(name)
        return ''
      }
      if (rep.tags.length > 0) {
        reply.header('surrogate-key', rep.tags.join(' '))
        reply.header('xkey', rep.tags.join(' '))
        // Cloudflare purges by Cache-Tag (comma-separated; it strips the header before the client).
        if (cacheTags) reply.header('cache-tag', rep.tags.join(','))
      }
      return payload
    }

    // A request that ends without onSend (aborted) must not leave others waiting on it.
    append('onResponse', (request: FastifyRequest, _reply: FastifyReply, done: () => void) => {
      (request as WithState)[kState]?.pending?.resolve(null)
      done()
    })
  })
}, { fastify: '5.x', name: 'edge-cache', dependencies: ['config', 'queue', 'broadcast'] })
