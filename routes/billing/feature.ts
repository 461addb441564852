import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createBillingJobs } from '../../services/billing/billing.jobs.js'
import { createStripeClient } from '../../services/billing/billing.stripe.js'
import {
  closeBillingAccount, entitlementOf, entitlementTerms, reportUsage, requeueStripeEvents, type BillingDeps, type Entitlement
} from '../../services/billing/billing.service.js'
import stripeRoutes from '../stripe/index.js'
import billingRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Decorated on the billing feature's context only. */
    billingDeps: BillingDeps
    /** The user's entitlement, from local state (fractal_entitlement; the assignment asks it in its own round trip). */
    entitlement (userId: string): Promise<Entitlement>
    /** The terms the entitlement is decided with; null when billing is not enforced (the billing feature's contract). */
    entitlementTerms: ReturnType<typeof entitlementTerms>
  }
}

/** Billing's dependencies: the Stripe client (none when billing is not configured), the queue and the terms. */
export async function billingDepsOf (app: FastifyInstance): Promise<BillingDeps> {
  const { billing, appUrl } = app.config
  const stripe = await createStripeClient(billing)
  return {
    stripe,
    webhookSecret: billing.webhookSecret,
    queue: app.queue,
    appUrl,
    trialDays: billing.trialDays,
    trialContainers: billing.trialContainers,
    pastDueGraceDays: billing.pastDueGraceDays,
    enforced: billing.enforced
  }
}

/**
 * The billing feature: plans, Stripe Checkout and portal, my subscription (tag billing) and Stripe's webhook
 * (stripe); the job that processes stored webhook events (subscription state, receipt and payment-failed
 * mails), usage reporting, and the account deletion's billing step. Its dependencies stay in its own
 * context; the contract it exposes (fastify-plugin) is the entitlement the containers feature asks before
 * handing out a container.
 */
export default fp(async function billingFeature (app) {
  const deps = await billingDepsOf(app)
  if (!deps.enforced) app.log.info('billing is off (no STRIPE_SECRET_KEY): every user may stream, without plan limits')
  app.decorate('entitlement', (userId: string) => entitlementOf(app.db, deps, userId))
  app.decorate('entitlementTerms', entitlementTerms(deps))

  // A deleted account's subscription is cancelled and its Stripe customer deleted before the account row goes.
  app.accountDeletionSteps.push(async (accountId) => {
    const closed = await closeBillingAccount(app.db, deps, accountId)
    if (closed.cancelled > 0 || closed.customerDeleted) app.log.info({ accountId, ...closed }, 'account deletion: billing closed at Stripe')
  })
  app.schedules.add({ name: 'report-usage', everyMs: 60_000, run: () => reportUsage(app.db, deps) })
  app.schedules.add({ name: 'stripe-events', everyMs: 60_000, run: () => requeueStripeEvents(app.db, app.queue) })
  app.queue.define(...createBillingJobs({ db: app.db, billing: deps, log: app.log }))

  await app.register(async function billingContext (billing) {
    billing.decorate('billingDeps', deps)
    await billing.register(billingRoutes)
    await billing.register(stripeRoutes)
  })
}, { fastify: '5.x', name: 'billing', dependencies: ['config', 'db', 'queue', 'mail', 'schedules', 'accounts', 'openapi-routes'] })
