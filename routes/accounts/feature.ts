import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createAccountJobs, type AccountDeletionStep } from '../../services/accounts/accounts.jobs.js'
import type { AccountDeps } from '../../services/accounts/accounts.service.js'
import { createGoogleVerifier, type GoogleVerifier } from '../../services/accounts/google.js'
import type { NewsletterDeps } from '../../services/accounts/newsletter.js'
import newsletterRoutes from '../newsletter/index.js'
import sessionsRoutes from '../sessions/index.js'
import usersRoutes from '../users/index.js'
import accountsRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** What the accounts services need from the outside, built once (decorated on the accounts feature's context only). */
    accountDeps: AccountDeps
    google: GoogleVerifier
    newsletterDeps: NewsletterDeps
    /** What deleting an account removes before the row; each feature that owns user data adds its step (the feature's contract). */
    accountDeletionSteps: AccountDeletionStep[]
  }
}

/** What the accounts services need from the app's infrastructure (tests open sessions with it directly). */
export function accountDepsOf (app: FastifyInstance): AccountDeps {
  const { config } = app
  return {
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
      signInMaxFailures: config.accounts.signInMaxFailures,
      personalTokenMaxTtlDays: config.accounts.personalTokenMaxTtlDays,
      personalTokensPerAccount: config.accounts.personalTokensPerAccount
    },
    log: app.log
  }
}

/** What the newsletter needs: where its links point, and the secret its unsubscribe tokens are signed with. */
export function newsletterDepsOf (app: FastifyInstance): NewsletterDeps {
  const { config } = app
  return {
    queue: app.queue,
    appUrl: config.appUrl,
    apiUrl: config.publicUrl ?? `http://${config.host}:${config.port}`,
    secret: app.jwtSigningSecret
  }
}

/**
 * The accounts feature: sign-up, verification, password reset, my account and sessions (tag accounts),
 * signing in (sessions), the operators' view of accounts (users) and the newsletter. Its dependencies,
 * Google sign-in and the account jobs stay in its own context; the one contract it exposes (fastify-plugin)
 * is `accountDeletionSteps`, where each feature that owns user data adds what deleting an account removes.
 */
export default fp(async function accountsFeature (app) {
  const deps = accountDepsOf(app)
  const steps: AccountDeletionStep[] = []
  app.decorate('accountDeletionSteps', steps)
  app.queue.define(...createAccountJobs({ db: app.db, steps, accounts: deps }))

  await app.register(async function accountsContext (accounts) {
    accounts.decorate('accountDeps', deps)
    accounts.decorate('google', createGoogleVerifier(app.config.google))
    accounts.decorate('newsletterDeps', newsletterDepsOf(app))
    await accounts.register(accountsRoutes)
    await accounts.register(sessionsRoutes)
    await accounts.register(usersRoutes)
    await accounts.register(newsletterRoutes)
  })
}, { fastify: '5.x', name: 'accounts', dependencies: ['config', 'clock', 'db', 'redis', 'broadcast', 'queue', 'auth', 'throttle', 'openapi-routes'] })
