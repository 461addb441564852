import { Redis } from 'ioredis'

/**
 * Deletes every key under a prefix (SCAN + UNLINK, never FLUSHALL: others use the same Redis) and answers how
 * many. One connection attempt: Redis away must not hold a clean-up, or the exit after it, forever. Used by
 * the test helpers (each file's prefix) and the bench (its run's prefix).
 */
export async function deleteRedisKeys (redisUrl: string, prefix: string): Promise<number> {
  const redis = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1, connectTimeout: 5000, retryStrategy: () => null })
  redis.on('error', () => {})
  let deleted = 0
  try {
    await redis.connect()
    let cursor = '0'
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000)
      cursor = next
      if (keys.length > 0) deleted += await redis.unlink(...keys)
    } while (cursor !== '0')
  } finally {
    redis.disconnect()
  }
  return deleted
}
