import fastifyRateLimit from '@fastify/rate-limit'
import fp from 'fastify-plugin'
import { DomainError } from '../services/errors.js'

/**
 * @fastify/rate-limit with no global limit: each operation's `x-rate-limit` (turned into
 * `config.rateLimit` by openapi-routes) sets its own. Registered before any route, since it reads route
 * config in onRoute. Redis-backed when Redis is configured, so limits hold across processes.
 */
export default fp(async function rateLimitPlugin (app) {
  if (!app.config.rateLimit.enabled) return
  await app.register(fastifyRateLimit, {
    global: false,
    ...(app.hasDecorator('redis') ? { redis: app.redis, nameSpace: 'rl:' } : {}),
    // Redis away: let requests through rather than fail every public read (auth routes tighten this later).
    skipOnError: true,
    errorResponseBuilder: (_request, context) => {
      const err = new DomainError('rate_limited', 'Too many requests', `Rate limit exceeded, retry in ${context.after}.`)
      return Object.assign(err, { statusCode: context.statusCode })
    }
  })
}, { fastify: '5.x', name: 'rate-limit', dependencies: ['config', 'errors', 'redis'] })
