import { sql, type Kysely } from 'kysely'

export async function up (db: Kysely<any>): Promise<void> {
  // Plans live here, each mapped to a Stripe price (npm run stripe:sync keeps Stripe in step with db/plans.json).
  await db.schema.createTable('plan')
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('amount', 'integer', (c) => c.notNull())
    .addColumn('currency', 'text', (c) => c.notNull())
    .addColumn('interval', 'text', (c) => c.notNull())
    .addColumn('trial_days', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('entitlements', 'jsonb', (c) => c.notNull())
    .addColumn('billed_by_hour', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('stripe_product_id', 'text')
    .addColumn('stripe_price_id', 'text')
    .addColumn('active', 'boolean', (c) => c.notNull().defaultTo(true))
    .addColumn('sort_order', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('plan_pkey', ['id'])
    .addUniqueConstraint('plan_stripe_price_id_uq', ['stripe_price_id'])
    .addCheckConstraint('plan_interval_check', sql`interval in ('month', 'year')`)
    .execute()

  // One Stripe customer per user, created once.
  await db.schema.createTable('billing_customer')
    .addColumn('user_id', 'uuid', (c) => c.notNull())
    .addColumn('stripe_customer_id', 'text', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    // Deleted in Stripe: the next checkout makes a new customer (the row keeps the old id until then).
    .addColumn('deleted_at', 'timestamptz')
    .addPrimaryKeyConstraint('billing_customer_pkey', ['user_id'])
    .addUniqueConstraint('billing_customer_stripe_uq', ['stripe_customer_id'])
    .addForeignKeyConstraint('billing_customer_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .execute()

  // The local copy of each user's subscription, kept by the webhook events: access is decided from it.
  await db.schema.createTable('subscription')
    .addColumn('user_id', 'uuid', (c) => c.notNull())
    .addColumn('stripe_subscription_id', 'text', (c) => c.notNull())
    .addColumn('plan_id', 'text')
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('trial_end', 'timestamptz')
    .addColumn('current_period_start', 'timestamptz')
    .addColumn('current_period_end', 'timestamptz')
    .addColumn('cancel_at_period_end', 'boolean', (c) => c.notNull().defaultTo(false))
    .addColumn('past_due_since', 'timestamptz')
    .addColumn('event_created', 'bigint', (c) => c.notNull().defaultTo(0))
    .addColumn('updated_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addPrimaryKeyConstraint('subscription_pkey', ['user_id'])
    .addUniqueConstraint('subscription_stripe_uq', ['stripe_subscription_id'])
    .addForeignKeyConstraint('subscription_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('subscription_plan_id_fkey', ['plan_id'], 'plan', ['id'])
    .execute()

  // Every Stripe event by id: a redelivery is a no-op; processing happens in a job.
  await db.schema.createTable('stripe_event')
    .addColumn('id', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    .addColumn('payload', 'jsonb', (c) => c.notNull())
    .addColumn('received_at', 'timestamptz', (c) => c.notNull().defaultTo(sql`now()`))
    .addColumn('processed_at', 'timestamptz')
    .addColumn('error', 'text')
    .addPrimaryKeyConstraint('stripe_event_pkey', ['id'])
    .execute()
  await sql`create index stripe_event_unprocessed_idx on stripe_event (received_at) where processed_at is null`.execute(db)

  // Container hours: one row per stopped container, reported to Stripe for plans billed by the hour.
  await db.schema.createTable('usage_record')
    .addColumn('container_id', 'uuid', (c) => c.notNull())
    .addColumn('user_id', 'uuid', (c) => c.notNull())
    .addColumn('seconds', 'integer', (c) => c.notNull())
    .addColumn('ended_at', 'timestamptz', (c) => c.notNull())
    .addColumn('reported_at', 'timestamptz')
    .addPrimaryKeyConstraint('usage_record_pkey', ['container_id'])
    .addForeignKeyConstraint('usage_record_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .execute()
  await sql`create index usage_record_user_ended_idx on usage_record (user_id, ended_at)`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of ['usage_record', 'stripe_event', 'subscription', 'billing_customer', 'plan']) await db.schema.dropTable(table).execute()
}
