import fp from 'fastify-plugin'
import { createAccountJobs, type AccountDeletionStep } from '../services/accounts/accounts.jobs.js'
import type { AccountDeps, FailureThrottle } from '../services/accounts/accounts.service.js'
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

/** Wires the accounts domain: its dependencies, Google sign-in, and the account deletion job. */
export default fp(async function accountsPlugin (app) {
  const { config } = app
  app.decorate('accountDeps', {
    queue: app.queue,
    cache: app.accountCache,
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
