import fp from 'fastify-plugin'
import { createAccountJobs, type AccountDeletionStep } from '../services/accounts/accounts.jobs.js'
import type { AccountDeps } from '../services/accounts/accounts.service.js'
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

/** Wires the accounts domain: its dependencies, Google sign-in, and the account deletion job. */
export default fp(async function accountsPlugin (app) {
  const { config } = app
  app.decorate('accountDeps', {
    queue: app.queue,
    clock: app.clock,
    cache: app.accountCache,
    signAccessToken: (claims) => app.issueAccessToken(claims),
    revocations: { revoke: (ids) => app.revokedSessions.add(ids) },
    throttle: app.throttle,
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
  app.queue.define(...createAccountJobs({ db: app.db, steps, accounts: app.accountDeps }))
}, { fastify: '5.x', name: 'accounts', dependencies: ['config', 'db', 'redis', 'broadcast', 'queue', 'auth', 'throttle'] })
