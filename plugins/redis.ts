import fastifyRedis from '@fastify/redis'
import fp from 'fastify-plugin'
import { Redis } from 'ioredis'

// Registers @fastify/redis (ioredis) when REDIS_URL is set. Without it, app.redis is absent and the
// rate-limit store, cache and queue run in process.
export default fp(async function redisPlugin (app) {
  const { url, prefix } = app.config.redis
  if (!url) return
  const client = new Redis(url, {
    keyPrefix: prefix,
    // Fail fast while Redis is away instead of queueing commands: callers decide (503, or fail open).
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    connectTimeout: 5000,
    // Commands issued in the same tick leave in one write (the rate limits of concurrent requests).
    enableAutoPipelining: true
  })
  // Heard, so never thrown; ioredis reconnects by itself and emits one per attempt: the first of an outage is
  // a warning, the rest debug, until it is back.
  let away = false
  client.on('error', (err) => {
    if (away) return app.log.debug({ err }, 'redis: still unreachable')
    away = true
    app.log.warn({ err }, 'redis: connection error; callers that need Redis answer 503 until it is back')
  })
  client.on('ready', () => {
    if (away) app.log.info('redis: connected again')
    away = false
  })
  // Our client, closed by us: @fastify/redis closes the clients it makes with QUIT, which throws while
  // Redis is away, and shutting down then (SIGTERM during an outage) must still succeed.
  app.addHook('onClose', async () => {
    try {
      await client.quit()
    } catch {
      client.disconnect()
    }
  })
  await app.register(fastifyRedis, { client, closeClient: false })
}, { fastify: '5.x', name: 'redis', dependencies: ['config'] })
