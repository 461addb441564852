// Billing's queries: plans, Stripe customers, subscriptions, stored Stripe events and usage records.
// One function per query; the service opens transactions and passes `trx` where several go together.
import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB, SubscriptionStatus } from '../../db/types.js'

type Db = Kysely<DB> | Transaction<DB>

export function listActivePlans (db: Db) {
  return db.selectFrom('plan').selectAll().where('active', '=', true).orderBy('sort_order').orderBy('id').execute()
}

export function findActivePlan (db: Db, planId: string) {
  return db.selectFrom('plan').selectAll().where('id', '=', planId).where('active', '=', true).executeTakeFirst()
}

export function findPlanByPrice (db: Db, priceId: string) {
  return db.selectFrom('plan').select('id').where('stripe_price_id', '=', priceId).executeTakeFirst()
}

/** The Stripe product and price of each plan (`npm run stripe:sync`). */
export async function setPlanStripeIds (db: Db, ids: Map<string, { product: string, price: string }>) {
  for (const [planId, { product, price }] of ids) {
    await db.updateTable('plan').set({ stripe_product_id: product, stripe_price_id: price }).where('id', '=', planId).execute()
  }
}

export function accountOf (db: Db, userId: string) {
  return db.selectFrom('account').select(['id', 'email', 'name', 'created_at']).where('id', '=', userId).executeTakeFirstOrThrow()
}

/** Where the user's billing mails go; undefined when the account is gone. */
export function findMailRecipient (db: Db, userId: string) {
  return db.selectFrom('account').select(['email', 'name']).where('id', '=', userId).executeTakeFirst()
}

/** The user's customer row, deleted or not. */
export function findCustomer (db: Db, userId: string) {
  return db.selectFrom('billing_customer').select(['stripe_customer_id', 'deleted_at']).where('user_id', '=', userId).executeTakeFirst()
}

/** The user's customer row unless it was deleted. */
export function findActiveCustomer (db: Db, userId: string) {
  return db.selectFrom('billing_customer').select('stripe_customer_id').where('user_id', '=', userId).where('deleted_at', 'is', null).executeTakeFirst()
}

/** Concurrent first inserts conflict on either unique key (user, Stripe customer): the first wins, the others do nothing. */
export function insertCustomer (db: Db, userId: string, customerId: string) {
  return db.insertInto('billing_customer').values({ user_id: userId, stripe_customer_id: customerId })
    .onConflict((oc) => oc.doNothing()).execute()
}

/** A deleted customer's row, pointed at its replacement. */
export function replaceDeletedCustomer (db: Db, userId: string, customerId: string) {
  return db.updateTable('billing_customer').set({ stripe_customer_id: customerId, deleted_at: null })
    .where('user_id', '=', userId).where('deleted_at', 'is not', null).execute()
}

export function customerIdOf (db: Db, userId: string) {
  return db.selectFrom('billing_customer').select('stripe_customer_id').where('user_id', '=', userId).executeTakeFirstOrThrow()
}

export async function userOfCustomer (db: Db, customerId: string) {
  return (await db.selectFrom('billing_customer').select('user_id').where('stripe_customer_id', '=', customerId).executeTakeFirst())?.user_id ?? null
}

/** The customer is gone (deleted here or at Stripe); `customerId`: only while the row still names that one. */
export function markCustomerDeleted (db: Db, userId: string, customerId?: string) {
  let query = db.updateTable('billing_customer').set({ deleted_at: sql`now()` }).where('user_id', '=', userId)
  if (customerId !== undefined) query = query.where('stripe_customer_id', '=', customerId)
  return query.execute()
}

export function cancelSubscription (db: Db, userId: string) {
  return db.updateTable('subscription').set({ status: 'canceled', updated_at: sql`now()` }).where('user_id', '=', userId).execute()
}

/** Cancelled by the customer's deletion: its time guards the state (an older event arriving late does not revive it). */
export function cancelSubscriptionAt (db: Db, userId: string, eventCreated: number) {
  return db.updateTable('subscription').set({ status: 'canceled', event_created: sql`greatest(event_created, ${eventCreated})`, updated_at: sql`now()` }).where('user_id', '=', userId).execute()
}

export function findSubscriptionWithPlan (db: Db, userId: string) {
  return db.selectFrom('subscription').leftJoin('plan', 'plan.id', 'subscription.plan_id')
    .select(['subscription.plan_id', 'subscription.status', 'subscription.trial_end', 'subscription.current_period_start', 'subscription.current_period_end', 'subscription.cancel_at_period_end', 'plan.name as plan_name'])
    .where('subscription.user_id', '=', userId).executeTakeFirst()
}

export interface SubscriptionValues {
  user_id: string
  stripe_subscription_id: string
  plan_id: string | null
  status: SubscriptionStatus
  trial_end: Date | null
  current_period_start: Date | null
  current_period_end: Date | null
  cancel_at_period_end: boolean
  event_created: number
}

/** The local row of a subscription; an older event (by `event_created`) never overwrites newer state. */
export function upsertSubscription (db: Db, values: SubscriptionValues) {
  const { status, event_created: eventCreated } = values
  return db.insertInto('subscription').values({ ...values, past_due_since: status === 'past_due' ? new Date() : null })
    .onConflict((oc) => oc.column('user_id').doUpdateSet({
      ...values,
      past_due_since: status === 'past_due' ? sql`coalesce(subscription.past_due_since, now())` : null,
      updated_at: sql`now()`
    }).where('subscription.event_created', '<=', String(eventCreated)))
    .execute()
}

/** Seconds of usage of the user since `since`. */
export function usageSecondsSince (db: Db, userId: string, since: Date) {
  return db.selectFrom('usage_record').select((eb) => eb.fn.coalesce(eb.fn.sum<number>('seconds'), sql<number>`0`).as('seconds'))
    .where('user_id', '=', userId).where('ended_at', '>=', since).executeTakeFirstOrThrow()
}

/** Usage not reported yet, with what reporting it needs (plan billed by the hour, Stripe customer); at most 500. */
export function unreportedUsage (db: Db) {
  return db.selectFrom('usage_record')
    .leftJoin('subscription', 'subscription.user_id', 'usage_record.user_id')
    .leftJoin('plan', 'plan.id', 'subscription.plan_id')
    .leftJoin('billing_customer', 'billing_customer.user_id', 'usage_record.user_id')
    .select(['usage_record.container_id', 'usage_record.seconds', 'usage_record.ended_at', 'plan.billed_by_hour', 'billing_customer.stripe_customer_id'])
    .where('usage_record.reported_at', 'is', null).limit(500).execute()
}

export function markUsageReported (db: Db, containerId: string) {
  return db.updateTable('usage_record').set({ reported_at: sql`now()` }).where('container_id', '=', containerId).execute()
}

/** Stores an event by its id; undefined when it was stored already (a redelivery). */
export function insertStripeEvent (db: Db, event: { id: string, type: string, payload: string }) {
  return db.insertInto('stripe_event').values(event)
    .onConflict((oc) => oc.column('id').doNothing()).returning('id').executeTakeFirst()
}

export function findPendingStripeEvent (db: Db, id: string) {
  return db.selectFrom('stripe_event').select('id').where('id', '=', id).where('processed_at', 'is', null).executeTakeFirst()
}

export function findStripeEvent (db: Db, id: string) {
  return db.selectFrom('stripe_event').selectAll().where('id', '=', id).executeTakeFirst()
}

/** Events stored before `before` and not processed yet, oldest first, at most 500. */
export function staleStripeEvents (db: Db, before: Date) {
  return db.selectFrom('stripe_event').select('id').where('processed_at', 'is', null)
    .where('received_at', '<', before).orderBy('received_at').limit(500).execute()
}

export function markStripeEventProcessed (db: Db, id: string) {
  return db.updateTable('stripe_event').set({ processed_at: sql`now()`, error: null }).where('id', '=', id).execute()
}

/** fractal_entitlement (migration T2700) for the user under `terms`. */
export async function entitlementRow<E> (db: Db, userId: string, terms: unknown) {
  const { rows } = await sql<{ e: E }>`select fractal_entitlement(${userId}::uuid, ${JSON.stringify(terms)}::jsonb) as e`.execute(db)
  return rows[0]!.e
}
