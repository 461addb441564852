import { createHash } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyReply, FastifyRequest } from 'fastify'

/** The `x-cache` extension of an operation. */
export interface CachePolicy {
  maxAge: number
  sMaxAge?: number
  staleWhileRevalidate?: number
  staleIfError?: number
  vary?: string[]
  tags?: string[]
}

declare module 'fastify' {
  interface FastifyContextConfig {
    cache?: CachePolicy
    /** The operation declares `security`: its answers are private. */
    secured?: boolean
  }
}

function cacheControl (p: CachePolicy): string {
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

function matches (ifNoneMatch: string, etag: string): boolean {
  if (ifNoneMatch.trim() === '*') return true
  return ifNoneMatch.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag)
}

/**
 * Applies the policy an operation declares in `x-cache`: Cache-Control (and CDN-Cache-Control), a strong
 * ETag with 304 on If-None-Match, Vary. Everything else is `no-store` (and `private` behind auth).
 */
export default fp(async function edgeCachePlugin (app) {
  app.addHook('onRoute', (route) => {
    const policy = route.config?.cache
    const store = route.config?.secured ? 'private, no-store' : 'no-store'
    if (!policy) {
      const hooks = route.onSend ? [route.onSend].flat() : []
      route.onSend = [...hooks, async (_request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
        if (!reply.hasHeader('cache-control')) reply.header('cache-control', store)
        return payload
      }]
      return
    }
    const value = cacheControl(policy)
    const cdnValue = policy.sMaxAge !== undefined ? `max-age=${policy.sMaxAge}` : null
    const vary = (policy.vary ?? ['Accept-Encoding']).join(', ')
    const hooks = route.onSend ? [route.onSend].flat() : []
    route.onSend = [...hooks, async (request: FastifyRequest, reply: FastifyReply, payload: unknown) => {
      const status = reply.statusCode
      if (status >= 500 || status === 429) {
        reply.header('cache-control', 'no-store')
        return payload
      }
      if (status >= 400) {
        // A short edge life for misses, so a burst of requests for a missing id does not reach us.
        reply.header('cache-control', 'public, max-age=0, s-maxage=10')
        return payload
      }
      reply.header('cache-control', value)
      if (cdnValue) reply.header('cdn-cache-control', cdnValue)
      reply.header('vary', vary)
      if (typeof payload !== 'string' && !Buffer.isBuffer(payload)) return payload
      const etag = etagOf(payload)
      reply.header('etag', etag)
      const ifNoneMatch = request.headers['if-none-match']
      if (status === 200 && ifNoneMatch && matches(ifNoneMatch, etag)) {
        reply.code(304)
        reply.removeHeader('content-type')
        reply.removeHeader('content-length')
        return ''
      }
      return payload
    }]
  })
}, { fastify: '5.x', name: 'edge-cache' })
