import fastifyRedis from '@fastify/redis'
import fp from 'fastify-plugin'

// Registers @fastify/redis (ioredis) when REDIS_URL is set. Without it, app.redis is absent and the
// rate-limit store, cache and queue run in process.
export default fp(async function redisPlugin (app) {
  const { url, prefix } = app.config.redis
  if (!url) return
  await app.register(fastifyRedis, {
    url,
    keyPrefix: prefix,
    // Fail fast while Redis is away instead of queueing commands: callers decide (503, or fail open).
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 5000,
    closeClient: true
  })
}, { fastify: '5.x', name: 'redis', dependencies: ['config'] })
