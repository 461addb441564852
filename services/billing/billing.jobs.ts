import type { Kysely } from 'kysely'
import type Stripe from 'stripe'
import type { DB } from '../../db/types.js'
import { sendMail } from '../mail/mail.service.js'
import type { JobDefinition } from '../queue.js'
import { findMailRecipient } from './billing.repository.js'
import { processStripeEvent, processStripeEventJob, type BillingDeps } from './billing.service.js'

/** A paid invoice's receipt, or a failed payment's notice, to the user (one mail per invoice: its id is the job's). */
export async function mailInvoice (db: Kysely<DB>, deps: Pick<BillingDeps, 'queue' | 'appUrl'>, userId: string, kind: 'receipt' | 'payment_failed', invoice: Stripe.Invoice) {
  const { appUrl } = deps
  const account = await findMailRecipient(db, userId)
  if (!account) return
  if (kind === 'receipt') {
    const line = invoice.lines?.data?.[0]
    await sendMail(deps.queue, {
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
    await sendMail(deps.queue, {
      to: account.email,
      template: 'payment-failed',
      data: { name: account.name, amount: invoice.amount_due, currency: invoice.currency, link: `${appUrl}/billing` }
    }, { jobId: `payment-failed:${invoice.id}` })
  }
}

/** The job that processes a stored webhook event: subscription state, and the receipt and payment-failed mails. */
export function createBillingJobs (deps: { db: Kysely<DB>, billing: BillingDeps, log: { warn (obj: object, msg: string): void } }): JobDefinition[] {
  const { db, billing, log } = deps
  return [{
    ...processStripeEventJob,
    handle: async (data: { eventId: string }) => {
      const result = await processStripeEvent(db, billing, data.eventId, (userId, kind, invoice) => mailInvoice(db, billing, userId, kind, invoice))
      if (result.outcome === 'unknown customer') log.warn({ eventId: data.eventId }, 'stripe event for a customer we do not know: nothing changed')
      return result
    }
  }]
}
