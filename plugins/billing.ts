import fp from 'fastify-plugin'
import type Stripe from 'stripe'
import {
  closeBillingAccount, entitlementOf, entitlementTerms, processStripeEvent, processStripeEventJob, reportUsage, requeueStripeEvents, type BillingDeps, type Entitlement
} from '../services/billing/billing.service.js'
import { sendMail } from '../services/mail/mail.service.js'

declare module 'fastify' {
  interface FastifyInstance {
    billingDeps: BillingDeps
    /** The user's entitlement, from local state (fractal_entitlement; the assignment asks it in its own round trip). */
    entitlement (userId: string): Promise<Entitlement>
    /** The terms the entitlement is decided with; null when billing is not enforced. */
    entitlementTerms: ReturnType<typeof entitlementTerms>
  }
}

/**
 * Billing: the real Stripe client (pointed at STRIPE_API_URL when set: a stand-in in tests), the job that
 * processes stored webhook events (subscription state, receipt and payment-failed mails), and the
 * entitlement check the containers feature asks before handing out a container.
 */
export default fp(async function billingPlugin (app) {
  const { billing, appUrl } = app.config
  let stripe: Stripe | null = null
  if (billing.stripeSecretKey) {
    const api = billing.stripeApiUrl ? new URL(billing.stripeApiUrl) : null
    // The Stripe SDK loads only when billing is configured.
    const { default: StripeClient } = await import('stripe')
    stripe = new StripeClient(billing.stripeSecretKey, {
      maxNetworkRetries: 2,
      timeout: 10_000,
      ...(api ? { host: api.hostname, port: Number(api.port || (api.protocol === 'https:' ? 443 : 80)), protocol: api.protocol.replace(':', '') as 'http' | 'https' } : {})
    })
  }
  if (!billing.enforced) app.log.info('billing is off (no STRIPE_SECRET_KEY): every user may stream, without plan limits')
  const deps: BillingDeps = {
    stripe,
    webhookSecret: billing.webhookSecret,
    queue: app.queue,
    appUrl,
    trialDays: billing.trialDays,
    trialContainers: billing.trialContainers,
    pastDueGraceDays: billing.pastDueGraceDays,
    enforced: billing.enforced
  }
  app.decorate('billingDeps', deps)
  app.decorate('entitlement', (userId: string) => entitlementOf(app.db, deps, userId))
  app.decorate('entitlementTerms', entitlementTerms(deps))

  // A deleted account's subscription is cancelled and its Stripe customer deleted before the account row goes.
  app.accountDeletionSteps.push(async (accountId) => {
    const closed = await closeBillingAccount(app.db, deps, accountId)
    if (closed.cancelled > 0 || closed.customerDeleted) app.log.info({ accountId, ...closed }, 'account deletion: billing closed at Stripe')
  })
  app.schedules.add({ name: 'report-usage', everyMs: 60_000, run: () => reportUsage(app.db, deps) })
  app.schedules.add({ name: 'stripe-events', everyMs: 60_000, run: () => requeueStripeEvents(app.db, app.queue) })
  app.queue.define({
    ...processStripeEventJob,
    handle: async (data: { eventId: string }) => {
      const result = await processEvent(data.eventId)
      if (result.outcome === 'unknown customer') app.log.warn({ eventId: data.eventId }, 'stripe event for a customer we do not know: nothing changed')
      return result
    }
  })
  const processEvent = (eventId: string) => processStripeEvent(app.db, deps, eventId, async (userId, kind, invoice) => {
    const account = await app.db.selectFrom('account').select(['email', 'name']).where('id', '=', userId).executeTakeFirst()
    if (!account) return
    if (kind === 'receipt') {
      const line = invoice.lines?.data?.[0]
      await sendMail(app.queue, {
        to: account.email,
        template: 'payment-receipt',
        data: {
          name: account.name,
          amount: invoice.amount_paid,
          currency: invoice.currency,
          period: { start: new Date((line?.period?.start ?? invoice.period_start) * 1000).toISOString(), end: new Date((line?.period?.end ?? invoice.period_end) * 1000).toISOString() },
          invoiceUrl: invoice.hosted_invoice_url ?? `${appUrl}/billing`
        }
      }, { jobId: `receipt:${invoice.id}` })
    } else {
      await sendMail(app.queue, {
        to: account.email,
        template: 'payment-failed',
        data: { name: account.name, amount: invoice.amount_due, currency: invoice.currency, link: `${appUrl}/billing` }
      }, { jobId: `payment-failed:${invoice.id}` })
    }
  })
}, { fastify: '5.x', name: 'billing', dependencies: ['config', 'db', 'queue', 'broadcast', 'mail', 'schedules', 'accounts'] })
