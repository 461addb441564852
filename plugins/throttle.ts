import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'
import type { Redis } from 'ioredis'
import type { FailureThrottle } from '../services/accounts/accounts.service.js'
import type { Clock } from '../services/clock.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Attempts per key in a sliding window (password checks and mails per address), shared by every process. */
    throttle: FailureThrottle
  }
}

// One attempt, atomically: drop attempts older than the window, refuse past `max` (answering the ms to wait
// until the oldest leaves the window), else record this one. Times come from the app's clock.
const attemptScript = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', tonumber(ARGV[1]) - tonumber(ARGV[2]))
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return math.max(1, tonumber(oldest[2]) + tonumber(ARGV[2]) - tonumber(ARGV[1]))
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 0`

/**
 * Attempts per key in a sliding window, in Redis (shared by every process) or in this process when embedded.
 * An attempt is counted before the work it guards (a password check), in one atomic step, so however many
 * arrive at once no more than `max` are let through per window.
 */
export function createThrottle (redis: Redis | null, clock: Clock): FailureThrottle {
  const memory = new Map<string, number[]>()
  return {
    async attempt (key, max, windowSeconds) {
      const now = clock.now()
      const windowMs = windowSeconds * 1000
      if (redis) {
        const waitMs = await redis.eval(attemptScript, 1, `attempts:${key}`, now, windowMs, max, `${now}:${randomUUID()}`) as number
        return Math.ceil(waitMs / 1000)
      }
      const times = (memory.get(key) ?? []).filter((at) => at > now - windowMs)
      if (times.length >= max) {
        memory.set(key, times)
        return Math.max(1, Math.ceil((times[0]! + windowMs - now) / 1000))
      }
      times.push(now)
      memory.set(key, times)
      return 0
    },
    async clear (key) {
      if (redis) await redis.del(`attempts:${key}`)
      else memory.delete(key)
    }
  }
}

export default fp(async function throttlePlugin (app) {
  app.decorate('throttle', createThrottle(app.hasDecorator('redis') ? app.redis : null, app.clock))
}, { fastify: '5.x', name: 'throttle', dependencies: ['clock', 'redis'] })
