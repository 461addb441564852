import fp from 'fastify-plugin'
import { sql } from '../db/kysely.js'
import type { FastifyRequest } from 'fastify'
import { pendingMigrations } from '../db/migrator.js'
import { DomainError } from '../services/errors.js'

export interface Readiness { status: 'ready', checks: Record<string, 'ok' | 'skipped'> }

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Resolves when the database (and Redis, when configured) answer and no migration is pending; throws
     * `unavailable` otherwise. Only
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
  // Migrations the database lacks (the release step has not run): asked at start-up, then at each probe only
  // until there are none; once applied they stay applied for this code, so no probe asks again.
  let migrated = false
  let asking: Promise<string[]> | undefined
  let told = ''
  const pending = () => {
    asking ??= pendingMigrations(app.db).then((names) => {
      if (names.length === 0) migrated = true
      else if (names.join() !== told) app.log.warn({ pending: names }, 'not ready: database migrations pending (npm run db:migrate)')
      told = names.join()
      return names
    }).finally(() => { asking = undefined })
    return asking
  }
  pending().catch(() => {})

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
    let unmigrated = 0
    let migrationsUnknown = false
    await Promise.all([
      within('database', sql`select 1`.execute(app.db)).then(() => { checks.database = 'ok' }, () => { failed.push('database') }),
      app.hasDecorator('redis')
        ? within('redis', app.redis.ping()).then(() => { checks.redis = 'ok' }, () => { failed.push('redis') })
        : Promise.resolve().then(() => { checks.redis = 'skipped' }),
      migrated ? undefined : within('migrations', pending()).then((names) => { unmigrated = names.length }, () => { migrationsUnknown = true })
    ])
    // An unreachable database is reported as such, not as migrations unknown too.
    if (failed.includes('database')) migrationsUnknown = false
    if (failed.length > 0 || unmigrated > 0 || migrationsUnknown) {
      const why = [
        ...(failed.length > 0 ? [`${failed.join(' and ')} not reachable`] : []),
        ...(unmigrated > 0 ? [`${unmigrated} database migration${unmigrated === 1 ? '' : 's'} pending`] : []),
        ...(migrationsUnknown ? ['the applied database migrations could not be read'] : [])
      ]
      throw new DomainError('unavailable', 'Service unavailable', details ? `Not ready: ${why.join('; ')}.` : 'Not ready.', { retryAfter: 5 })
    }
    return { status: 'ready', checks: details ? checks : {} }
  })
}, { fastify: '5.x', name: 'health', dependencies: ['db', 'redis', 'auth'] })
