import fp from 'fastify-plugin'
import { sql } from 'kysely'
import { DomainError } from '../services/errors.js'

export interface Readiness { status: 'ready', checks: Record<string, 'ok' | 'skipped'> }

declare module 'fastify' {
  interface FastifyInstance {
    /** Resolves when the database (and Redis, when configured) answer; throws `unavailable` otherwise. */
    readiness (): Promise<Readiness>
  }
}

const timeoutMs = 2000

async function within<T> (what: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${timeoutMs} ms`)), timeoutMs)
  })
  try {
    return await Promise.race([promise, timeout])
  } finally {
    clearTimeout(timer)
  }
}

export default fp(async function healthPlugin (app) {
  app.decorate('readiness', async function readiness (): Promise<Readiness> {
    const checks: Readiness['checks'] = {}
    const failed: string[] = []
    await Promise.all([
      within('database', sql`select 1`.execute(app.db)).then(() => { checks.database = 'ok' }, () => { failed.push('database') }),
      app.hasDecorator('redis')
        ? within('redis', app.redis.ping()).then(() => { checks.redis = 'ok' }, () => { failed.push('redis') })
        : Promise.resolve().then(() => { checks.redis = 'skipped' })
    ])
    if (failed.length > 0) {
      throw new DomainError('unavailable', 'Service unavailable', `Not ready: ${failed.join(' and ')} not reachable.`, { retryAfter: 5 })
    }
    return { status: 'ready', checks }
  })
}, { fastify: '5.x', name: 'health', dependencies: ['db', 'redis'] })
