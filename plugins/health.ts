import fp from 'fastify-plugin'
import { sql } from 'kysely'
import type { FastifyRequest } from 'fastify'
import { DomainError } from '../services/errors.js'

export interface Readiness { status: 'ready', checks: Record<string, 'ok' | 'skipped'> }

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Resolves when the database (and Redis, when configured) answer; throws `unavailable` otherwise. Only
     * with `details` does it name the checks (an operator's view): anyone else learns ready or not.
     */
    readiness (details: boolean): Promise<Readiness>
    /** Whether the request comes from an operator: the metrics scrape token, or an access token with scope `admin`. */
    isOperator (request: FastifyRequest): Promise<boolean>
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

// The credentials that make an operator, as the spec's security schemes check them.
const operatorCredentials: Array<[scheme: string, scopes: string[]]> = [['metricsToken', []], ['bearer', ['admin']]]

export default fp(async function healthPlugin (app) {
  app.decorate('isOperator', async function isOperator (request: FastifyRequest): Promise<boolean> {
    for (const [scheme, scopes] of operatorCredentials) {
      try {
        await app.securityHandlers[scheme]!(request, scopes)
        return true
      } catch {
        // Not this credential: the next one, else an anonymous caller.
      }
    }
    return false
  })

  app.decorate('readiness', async function readiness (details: boolean): Promise<Readiness> {
    const checks: Readiness['checks'] = {}
    const failed: string[] = []
    await Promise.all([
      within('database', sql`select 1`.execute(app.db)).then(() => { checks.database = 'ok' }, () => { failed.push('database') }),
      app.hasDecorator('redis')
        ? within('redis', app.redis.ping()).then(() => { checks.redis = 'ok' }, () => { failed.push('redis') })
        : Promise.resolve().then(() => { checks.redis = 'skipped' })
    ])
    if (failed.length > 0) {
      throw new DomainError('unavailable', 'Service unavailable', details ? `Not ready: ${failed.join(' and ')} not reachable.` : 'Not ready.', { retryAfter: 5 })
    }
    return { status: 'ready', checks: details ? checks : {} }
  })
}, { fastify: '5.x', name: 'health', dependencies: ['db', 'redis', 'auth'] })
