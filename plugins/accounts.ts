import fp from 'fastify-plugin'
import { createAccountJobs, type AccountDeletionStep } from '../services/accounts/accounts.jobs.js'
import type { Account } from '../db/types.js'
import type { AccountCache, AccountDeps, FailureThrottle } from '../services/accounts/accounts.service.js'
import { createGoogleVerifier, type GoogleVerifier } from '../services/accounts/google.js'
import type { NewsletterDeps } from '../services/accounts/newsletter.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** What the accounts services need from the outside, built once. */
    accountDeps: AccountDeps
    google: GoogleVerifier
    newsletterDeps: NewsletterDeps
    /** What deleting an account removes before the row; each feature that owns user data adds its step. */
    accountDeletionSteps: AccountDeletionStep[]
  }
}

/** Failure counts in Redis (shared by every process), or in this process when embedded. */
function createThrottle (redis: import('ioredis').Redis | null): FailureThrottle {
  const memory = new Map<string, { count: number, until: number }>()
  return {
    async blockedFor (key, max) {
      if (redis) {
        const [count, ttl] = await Promise.all([redis.get(`fail:${key}`), redis.ttl(`fail:${key}`)])
        return Number(count ?? 0) >= max ? Math.max(ttl, 1) : 0
      }
      const entry = memory.get(key)
      if (!entry || entry.until < Date.now()) return 0
      return entry.count >= max ? Math.ceil((entry.until - Date.now()) / 1000) : 0
    },
    async fail (key, windowSeconds) {
      if (redis) {
        await redis.multi().incr(`fail:${key}`).expire(`fail:${key}`, windowSeconds, 'NX').exec()
        return
      }
      const entry = memory.get(key)
      if (!entry || entry.until < Date.now()) memory.set(key, { count: 1, until: Date.now() + windowSeconds * 1000 })
      else entry.count++
    },
    async clear (key) {
      if (redis) await redis.del(`fail:${key}`)
      else memory.delete(key)
    }
  }
}

/** Accounts read in the last seconds, per process; a change anywhere drops the entry everywhere. */
async function createAccountCache (app: import('fastify').FastifyInstance, ttlMs: number): Promise<AccountCache> {
  const entries = new Map<string, { account: Account, until: number }>()
  await app.broadcast.subscribe('accounts:changed', (id) => { entries.delete(id as string) })
  // Missed messages while Redis was away: start afresh.
  app.broadcast.onReconnect(async () => { entries.clear() })
  return {
    get (id) {
      const entry = entries.get(id)
      if (!entry) return undefined
      if (entry.until > Date.now()) return entry.account
      entries.delete(id)
      return undefined
    },
    set (account) {
      if (entries.size >= 10_000) entries.delete(entries.keys().next().value!)
      entries.set(account.id, { account, until: Date.now() + ttlMs })
    },
    async invalidate (id) {
      entries.delete(id)
      await app.broadcast.publish('accounts:changed', id)
    }
  }
}

/** Wires the accounts domain: its dependencies, Google sign-in, and the account deletion job. */
export default fp(async function accountsPlugin (app) {
  const { config } = app
  app.decorate('accountDeps', {
    queue: app.queue,
    cache: await createAccountCache(app, 5000),
    signAccessToken: (claims) => app.issueAccessToken(claims),
    revocations: { revoke: (ids) => app.revokedSessions.add(ids) },
    throttle: createThrottle(app.hasDecorator('redis') ? app.redis : null),
    settings: {
      appUrl: config.appUrl,
      accessTokenTtl: config.jwt.accessTokenTtl,
      refreshTokenTtlDays: config.accounts.refreshTokenTtlDays,
      passwordMinLength: config.accounts.passwordMinLength,
      signInMaxFailures: config.accounts.signInMaxFailures
    },
    log: app.log
  })
  app.decorate('google', createGoogleVerifier(config.google))
  app.decorate('newsletterDeps', {
    queue: app.queue,
    appUrl: config.appUrl,
    apiUrl: config.publicUrl ?? `http://${config.host}:${config.port}`,
    secret: app.jwtSigningSecret
  })
  const steps: AccountDeletionStep[] = []
  app.decorate('accountDeletionSteps', steps)
  app.queue.define(...createAccountJobs({ db: app.db, steps }))
}, { fastify: '5.x', name: 'accounts', dependencies: ['config', 'db', 'redis', 'broadcast', 'queue', 'auth'] })
