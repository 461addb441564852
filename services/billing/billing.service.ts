import type { Kysely } from 'kysely'
import type Stripe from 'stripe'
import type { DB, Plan, SubscriptionStatus } from '../../db/types.js'
import type { JobQueue } from '../queue.js'
import { upsertPlans, type PlanDefinition } from '../../db/plans.js'
import { problemOf } from '../sql-errors.js'
import { BadSignature, NotAnEvent, BillingNotConfigured, NoBillingAccount, PlanNotFound } from './billing.errors.js'
import * as repo from './billing.repository.js'

export function listPlans (db: Kysely<DB>) {
  return repo.listActivePlans(db)
}

/** The meter container hours are reported to, for plans billed by the hour. */
export const meterEventName = 'fractal_container_hours'

/**
 * `npm run stripe:sync`: each plan of the file gets its Stripe product (id `fractal_<plan>`) and a price
 * found by its lookup key, which carries the amount (prices are immutable: a changed amount is a new price
 * under a new key, the plan maps to it, subscribers of the old price keep it),
 * metered on the container-hours meter for plans billed by the hour; the database then maps plan → price.
 */
export async function syncPlansWithStripe (db: Kysely<DB>, stripe: Stripe, plans: PlanDefinition[], log: (line: string) => void = () => {}) {
  let meterId: string | undefined
  const ids = new Map<string, { product: string, price: string }>()
  for (const plan of plans) {
    const productId = `fractal_${plan.id.replace(/[^A-Za-z0-9_]/g, '_')}`
    let product: Stripe.Product
    try {
      product = await stripe.products.update(productId, { name: plan.name, active: true })
    } catch (err) {
      if ((err as { code?: string }).code !== 'resource_missing') throw err
      product = await stripe.products.create({ id: productId, name: plan.name })
      log(`product ${productId} created`)
    }
    const lookupKey = `fractal_${plan.id}_${plan.amount}_${plan.currency}_${plan.interval}${plan.billedByHour ? '_hourly' : ''}`
    const found = await stripe.prices.list({ lookup_keys: [lookupKey], active: true, limit: 1 })
    let price = found.data[0]
    if (!price) {
      let recurring: Stripe.PriceCreateParams.Recurring = { interval: plan.interval }
      if (plan.billedByHour) {
        meterId ??= await ensureMeter(stripe)
        recurring = { interval: plan.interval, usage_type: 'metered', meter: meterId }
      }
      price = await stripe.prices.create({ product: product.id, currency: plan.currency, unit_amount: plan.amount, recurring, lookup_key: lookupKey, transfer_lookup_key: true })
      log(`price ${price.id} created for ${plan.id}`)
    }
    ids.set(plan.id, { product: product.id, price: price.id })
  }
  // The file's plans land as the seed lands them; the Stripe ids they map to are billing's.
  await upsertPlans(db, plans)
  await repo.setPlanStripeIds(db, ids)
  return ids
}

async function ensureMeter (stripe: Stripe): Promise<string> {
  for await (const meter of stripe.billing.meters.list({ status: 'active', limit: 100 })) {
    if (meter.event_name === meterEventName) return meter.id
  }
  const meter = await stripe.billing.meters.create({
    display_name: 'Container hours',
    event_name: meterEventName,
    default_aggregation: { formula: 'sum' },
    customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' },
    value_settings: { event_payload_key: 'hours' }
  })
  return meter.id
}

export interface BillingDeps {
  stripe: Stripe | null
  webhookSecret: string | null
  queue: JobQueue
  appUrl: string
  trialDays: number
  trialContainers: number
  pastDueGraceDays: number
  enforced: boolean
}

function stripeOf (deps: Pick<BillingDeps, 'stripe'>): Stripe {
  if (!deps.stripe) throw new BillingNotConfigured()
  return deps.stripe
}

/**
 * The user's Stripe customer, created once (Stripe's idempotency key guards two concurrent first calls). A
 * customer deleted in Stripe is replaced by a new one (a key of its own, so Stripe does not replay the old).
 */
async function customerOf (db: Kysely<DB>, deps: BillingDeps, user: { id: string, email: string, name: string }): Promise<string> {
  const known = await repo.findCustomer(db, user.id)
  if (known && !known.deleted_at) return known.stripe_customer_id
  const customer = await stripeOf(deps).customers.create(
    { email: user.email, name: user.name, metadata: { fractal_user_id: user.id } },
    { idempotencyKey: known ? `fractal-customer-${user.id}-after-${known.stripe_customer_id}` : `fractal-customer-${user.id}` }
  )
  // Concurrent first checkouts all get the same customer (one idempotency key): the first insert wins, the
  // others conflict on either unique key and do nothing. A deleted customer's row is pointed at the new one.
  await repo.insertCustomer(db, user.id, customer.id)
  if (known?.deleted_at) await repo.replaceDeletedCustomer(db, user.id, customer.id)
  const row = await repo.customerIdOf(db, user.id)
  return row.stripe_customer_id
}

async function accountOf (db: Kysely<DB>, userId: string) {
  return repo.accountOf(db, userId)
}

/** A Stripe Checkout session for a plan (tax by Stripe Tax); answers its URL. */
export async function createCheckout (db: Kysely<DB>, deps: BillingDeps, userId: string, planId: string) {
  const stripe = stripeOf(deps)
  const plan = await repo.findActivePlan(db, planId)
  if (!plan || !plan.stripe_price_id) throw new PlanNotFound(planId)
  const customer = await customerOf(db, deps, await accountOf(db, userId))
  const session = await stripe.checkout.sessions.create({
    mode: 'subscription',
    customer,
    client_reference_id: userId,
    line_items: [plan.billed_by_hour ? { price: plan.stripe_price_id } : { price: plan.stripe_price_id, quantity: 1 }],
    automatic_tax: { enabled: true },
    customer_update: { address: 'auto' },
    subscription_data: { metadata: { fractal_user_id: userId, fractal_plan_id: plan.id }, ...(plan.trial_days > 0 ? { trial_period_days: plan.trial_days } : {}) },
    success_url: `${deps.appUrl}/billing?checkout=success`,
    cancel_url: `${deps.appUrl}/billing?checkout=cancelled`
  })
  if (!session.url) throw new Error('Stripe returned a checkout session without a URL')
  return { url: session.url, expiresAt: new Date(session.expires_at * 1000).toISOString() }
}

const missingAtStripe = (err: unknown) => (err as { code?: string, statusCode?: number }).code === 'resource_missing' || (err as { statusCode?: number }).statusCode === 404

/**
 * Account deletion's billing step: every subscription of the user's Stripe customer that has not ended is
 * cancelled at once (no proration, no final invoice: Stripe's defaults), then the customer is deleted
 * (Stripe keeps its invoices and payments for the records; the card details go). Idempotent: a retried job
 * asks Stripe again for what is still running, and anything Stripe no longer knows (404 `resource_missing`:
 * cancelled or deleted already, by an earlier attempt or in the dashboard) counts as done. The local rows
 * then say so, and a later run asks Stripe nothing.
 */
export async function closeBillingAccount (db: Kysely<DB>, deps: Pick<BillingDeps, 'stripe'>, userId: string) {
  const customer = await repo.findCustomer(db, userId)
  // Never a Stripe customer, or one deleted already (here, or at Stripe: the customer.deleted event).
  if (!customer || customer.deleted_at) return { cancelled: 0, customerDeleted: false }
  const stripe = stripeOf(deps)
  const customerId = customer.stripe_customer_id
  let cancelled = 0
  try {
    // Without `status`, Stripe lists every subscription that is not canceled (incomplete_expired ones too).
    for await (const sub of stripe.subscriptions.list({ customer: customerId, limit: 100 })) {
      if (sub.status === 'canceled' || sub.status === 'incomplete_expired') continue
      try {
        await stripe.subscriptions.cancel(sub.id)
        cancelled++
      } catch (err) {
        if (!missingAtStripe(err)) throw err
      }
    }
  } catch (err) {
    if (!missingAtStripe(err)) throw err
  }
  let customerDeleted = true
  try {
    await stripe.customers.del(customerId)
  } catch (err) {
    if (!missingAtStripe(err)) throw err
    customerDeleted = false
  }
  await db.transaction().execute(async (trx) => {
    await repo.cancelSubscription(trx, userId)
    await repo.markCustomerDeleted(trx, userId, customerId)
  })
  return { cancelled, customerDeleted }
}

/** Stripe's customer portal (cards, invoices, cancel). */
export async function createPortal (db: Kysely<DB>, deps: BillingDeps, userId: string) {
  const stripe = stripeOf(deps)
  const known = await repo.findActiveCustomer(db, userId)
  if (!known) throw new NoBillingAccount()
  const session = await stripe.billingPortal.sessions.create({ customer: known.stripe_customer_id, return_url: `${deps.appUrl}/billing` })
  return { url: session.url }
}

/** What the user sees of their subscription: plan, status, trial, period, cancel flag, usage this period. */
export async function subscriptionOf (db: Kysely<DB>, deps: Pick<BillingDeps, 'trialDays'>, userId: string) {
  const [account, sub] = await Promise.all([
    accountOf(db, userId),
    repo.findSubscriptionWithPlan(db, userId)
  ])
  const trialEndsAt = new Date(account.created_at.getTime() + deps.trialDays * 86_400_000)
  const periodStart = sub?.current_period_start ?? account.created_at
  const usage = await repo.usageSecondsSince(db, userId, periodStart)
  return {
    plan: sub?.plan_id ? { id: sub.plan_id, name: sub.plan_name ?? sub.plan_id } : null,
    status: sub?.status ?? (trialEndsAt > new Date() ? 'free_trial' as const : 'none' as const),
    trialEnd: (sub?.trial_end ?? trialEndsAt).toISOString(),
    currentPeriodStart: sub?.current_period_start?.toISOString() ?? null,
    currentPeriodEnd: sub?.current_period_end?.toISOString() ?? null,
    cancelAtPeriodEnd: sub?.cancel_at_period_end ?? false,
    usage: { containerHours: Math.round((Number(usage.seconds) / 3600) * 100) / 100 }
  }
}

export const processStripeEventJob = { family: 'accounts', name: 'processStripeEvent' } as const

/**
 * The webhook: the raw body is verified with the signing secret (stripe.webhooks.constructEvent), stored by
 * event id (a redelivery changes nothing) and processed by a job. Answers whether it was new.
 */
export async function acceptStripeEvent (db: Kysely<DB>, deps: BillingDeps, rawBody: Buffer, signature: string | undefined) {
  const stripe = stripeOf(deps)
  if (!deps.webhookSecret) throw new BillingNotConfigured()
  let event: Stripe.Event
  try {
    event = stripe.webhooks.constructEvent(rawBody, signature ?? '', deps.webhookSecret)
  } catch (err) {
    throw new BadSignature((err as Error).message.split('\n')[0] ?? 'invalid')
  }
  // Signed, but not an event (a test payload, a misconfigured sender): refused, nothing stored.
  const shape = event as unknown as { id?: unknown, type?: unknown } | null
  if (!shape || typeof shape.id !== 'string' || typeof shape.type !== 'string' || shape.id.length === 0) throw new NotAnEvent()
  const inserted = await repo.insertStripeEvent(db, { id: event.id, type: event.type, payload: JSON.stringify(event) })
  // A redelivery of an event not processed yet (its enqueue may have failed) queues it again.
  const pending = inserted ? true : Boolean(await repo.findPendingStripeEvent(db, event.id))
  if (pending) await deps.queue.enqueue(processStripeEventJob, { eventId: event.id }, { jobId: `stripe:${event.id}:${Date.now()}`, retries: 8 })
  return { received: true, duplicate: !inserted }
}

/** Events stored but not processed a minute later (their queue entry was lost): queued again. */
export async function requeueStripeEvents (db: Kysely<DB>, queue: JobQueue) {
  const stale = await repo.staleStripeEvents(db, new Date(Date.now() - 60_000))
  for (const { id } of stale) await queue.enqueue(processStripeEventJob, { eventId: id }, { jobId: `stripe:${id}:${Date.now()}`, retries: 8 })
  return { requeued: stale.length }
}

const ts = (seconds: number | null | undefined) => (seconds ? new Date(seconds * 1000) : null)

/** A subscription object → the local row (older events never overwrite newer state). */
async function applySubscription (db: Kysely<DB>, deps: BillingDeps, sub: Stripe.Subscription, eventCreated: number) {
  const customerId = typeof sub.customer === 'string' ? sub.customer : sub.customer.id
  const userId = sub.metadata?.fractal_user_id ?? await repo.userOfCustomer(db, customerId)
  if (!userId) return 'unknown customer'
  const item = sub.items?.data?.[0] as (Stripe.SubscriptionItem & { current_period_start?: number, current_period_end?: number }) | undefined
  const priceId = item?.price?.id
  const plan = priceId ? await repo.findPlanByPrice(db, priceId) : undefined
  const legacy = sub as unknown as { current_period_start?: number, current_period_end?: number }
  const status = sub.status as SubscriptionStatus
  const values = {
    user_id: userId,
    stripe_subscription_id: sub.id,
    plan_id: plan?.id ?? sub.metadata?.fractal_plan_id ?? null,
    status,
    trial_end: ts(sub.trial_end),
    current_period_start: ts(item?.current_period_start ?? legacy.current_period_start),
    current_period_end: ts(item?.current_period_end ?? legacy.current_period_end),
    cancel_at_period_end: sub.cancel_at_period_end,
    event_created: eventCreated
  }
  try {
    await repo.upsertSubscription(db, values)
  } catch (err) {
    // The account is gone (deleting it cancels the subscription at Stripe, whose events follow): nothing to keep.
    if ((err as { code?: string }).code === '23503') return 'unknown customer'
    throw err
  }
  return `subscription ${sub.id} is ${status}`
}

/** Processes one stored event; its outcome is kept on the row. Nothing on a request path calls Stripe for access. */
export async function processStripeEvent (db: Kysely<DB>, deps: BillingDeps, eventId: string, notify: (userId: string, kind: 'receipt' | 'payment_failed', invoice: Stripe.Invoice) => Promise<void>) {
  const row = await repo.findStripeEvent(db, eventId)
  if (!row || row.processed_at) return { skipped: true }
  const event = row.payload as unknown as Stripe.Event
  let outcome = 'ignored'
  switch (event.type) {
    case 'checkout.session.completed': {
      const session = event.data.object
      if (session.mode === 'subscription' && session.subscription && deps.stripe) {
        const subId = typeof session.subscription === 'string' ? session.subscription : session.subscription.id
        outcome = await applySubscription(db, deps, await deps.stripe.subscriptions.retrieve(subId), event.created)
      }
      break
    }
    case 'customer.subscription.created':
    case 'customer.subscription.updated':
    case 'customer.subscription.deleted':
      outcome = await applySubscription(db, deps, event.data.object, event.created)
      break
    case 'invoice.paid':
    case 'invoice.payment_failed': {
      const invoice = event.data.object
      const customerId = typeof invoice.customer === 'string' ? invoice.customer : invoice.customer?.id
      const userId = customerId ? await repo.userOfCustomer(db, customerId) : null
      if (userId) {
        await notify(userId, event.type === 'invoice.paid' ? 'receipt' : 'payment_failed', invoice)
        outcome = `${event.type === 'invoice.paid' ? 'receipt' : 'payment failure'} mailed`
      } else outcome = 'unknown customer'
      break
    }
    case 'customer.deleted': {
      const customer = event.data.object
      const userId = await repo.userOfCustomer(db, customer.id)
      if (userId) {
        await db.transaction().execute(async (trx) => {
          // The deletion's time guards the state: an older subscription event arriving late does not revive it.
          await repo.cancelSubscriptionAt(trx, userId, event.created)
          await repo.markCustomerDeleted(trx, userId)
        })
        outcome = 'customer removed'
      }
      break
    }
  }
  await repo.markStripeEventProcessed(db, eventId)
  return { outcome }
}

/**
 * Container hours of plans billed by the hour go to Stripe as meter events (the container id is the event's
 * identifier: a retry is deduplicated by Stripe); usage of other plans is only marked done.
 */
export async function reportUsage (db: Kysely<DB>, deps: Pick<BillingDeps, 'stripe'>) {
  const rows = await repo.unreportedUsage(db)
  let reported = 0
  for (const row of rows) {
    if (row.billed_by_hour && row.stripe_customer_id && deps.stripe) {
      await deps.stripe.billing.meterEvents.create({
        event_name: meterEventName,
        identifier: row.container_id,
        timestamp: Math.floor(row.ended_at.getTime() / 1000),
        payload: { stripe_customer_id: row.stripe_customer_id, hours: (Math.ceil((row.seconds / 3600) * 100) / 100).toFixed(2) }
      })
      reported++
    }
    await repo.markUsageReported(db, row.container_id)
  }
  return { reported, settled: rows.length }
}

/** plan: the plan's id, null in the trial (or with billing off). */
export interface Entitlement { plan: string | null, concurrentContainers: number, regions: string[] | null, maxDpi: number }

/** What billing hands the assignment: the terms fractal_entitlement decides with (null: billing off). */
export const entitlementTerms = (deps: Pick<BillingDeps, 'enforced' | 'trialDays' | 'trialContainers' | 'pastDueGraceDays'>) =>
  deps.enforced ? { trialDays: deps.trialDays, trialContainers: deps.trialContainers, graceDays: deps.pastDueGraceDays } : null

/**
 * May this user start a container now, and within which limits? The one answer is the SQL function
 * fractal_entitlement (db/functions/fractal_entitlement.sql), from local state only: the trial (from sign-up), else an active or
 * trialing subscription, or a past-due one within the grace period, and the plan's monthly hours.
 * The assignment calls it inside its own round trip; this is the same answer for anything else.
 */
export async function entitlementOf (db: Kysely<DB>, deps: Pick<BillingDeps, 'enforced' | 'trialDays' | 'trialContainers' | 'pastDueGraceDays' | 'appUrl'>, userId: string): Promise<Entitlement> {
  const terms = entitlementTerms(deps)
  if (!terms) return { plan: null, concurrentContainers: 1000, regions: null, maxDpi: 480 }
  try {
    return await repo.entitlementRow<Entitlement>(db, userId, terms)
  } catch (err) {
    throw problemOf(err, { appUrl: deps.appUrl })
  }
}

export type { Plan }
