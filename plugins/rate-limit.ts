import { createRequire } from 'node:module'
import fastifyRateLimit, { type FastifyRateLimitStore, type FastifyRateLimitStoreCtor, type RateLimitPluginOptions } from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import { DomainError } from '../services/errors.js'

type StoreCallback = Parameters<FastifyRateLimitStore['incr']>[1]
type RouteParams = Parameters<FastifyRateLimitStore['child']>[0] & Pick<RateLimitPluginOptions, 'continueExceeding' | 'exponentialBackoff'>
// The plugin's own Redis store (its Lua script, its key layout), which the package ships but does not type.
const RedisStore = createRequire(import.meta.url)('@fastify/rate-limit/store/RedisStore.js') as
  new (continueExceeding: boolean, exponentialBackoff: boolean, redis: Redis, key: string) => FastifyRateLimitStore

/** Seconds a caller of a fail-closed operation is told to wait while the store is away. */
export const storeDownRetryAfter = 5

/**
 * The Redis store, whose failures become `unavailable` (503 + Retry-After) rather than whatever ioredis
 * says (a 500 for some of its messages). Only fail-closed routes ever see them: the others skip on error.
 */
class GuardedStore implements FastifyRateLimitStore {
  constructor (private readonly inner: FastifyRateLimitStore) {}

  incr (key: string, callback: StoreCallback, timeWindow: number, max: number) {
    this.inner.incr(key, (err, result) => {
      if (!err) return callback(null, result)
      callback(Object.assign(new DomainError('unavailable', 'Service unavailable',
        'This operation is paused while its rate limiter cannot reach its store. Try again shortly.', { retryAfter: storeDownRetryAfter }), { cause: err }))
    }, timeWindow, max)
  }

  child (routeOptions: RouteParams) {
    return new GuardedStore(this.inner.child(routeOptions))
  }
}

/**
 * @fastify/rate-limit with no global limit: each operation's `x-rate-limit` (turned into
 * `config.rateLimit` by openapi-routes) sets its own. Registered before any route, since it reads route
 * config in onRoute. Redis-backed when Redis is configured, so limits hold across processes.
 *
 * Redis away: a limit is skipped (public reads keep working), except on the operations whose `x-rate-limit`
 * says `failClosed: true` (sign-in, sign-up, password reset...: their limit is what stops a brute force),
 * which answer 503 until it is back. RATE_LIMIT_FAIL_CLOSED=false makes those skip too.
 */
export default fp(async function rateLimitPlugin (app) {
  if (!app.config.rateLimit.enabled) return
  const redis = app.hasDecorator('redis') ? app.redis : null
  await app.register(fastifyRateLimit, {
    global: false,
    ...(redis
      ? {
          // A constructor that hands back another object: the plugin calls `new store(options)`.
          store: function guardedRedisStore (options: RateLimitPluginOptions) {
            return new GuardedStore(new RedisStore(options.continueExceeding ?? false, options.exponentialBackoff ?? false, redis, 'rl:'))
          } as unknown as FastifyRateLimitStoreCtor
        }
      : {}),
    skipOnError: true,
    errorResponseBuilder: (_request, context) => {
      const err = new DomainError('rate_limited', 'Too many requests', `Rate limit exceeded, retry in ${context.after}.`)
      return Object.assign(err, { statusCode: context.statusCode })
    }
  })
}, { fastify: '5.x', name: 'rate-limit', dependencies: ['config', 'errors', 'redis'] })
