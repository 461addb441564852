// The billing part of `npm run bench`: Stripe webhook events, signed like Stripe signs them, accepted by the
// app (signature check, stored by id) and processed by its worker (the local subscription updated).
// Prints events accepted and processed per second. The app runs in this process against the bench
// database, with Stripe configured (no call to Stripe is needed for subscription events).
import { randomBytes } from 'node:crypto'
import Stripe from 'stripe'
import { buildApp } from '../app.js'
import { loadConfig } from '../plugins/config.js'

export interface WebhookBenchResult { events: number, acceptedPerSec: number, processedPerSec: number, pending: number }

export async function webhookBench (o: { databaseUrl: string, redisUrl: string, privateKey: string, events: number, log: (line: string) => void }): Promise<WebhookBenchResult> {
  const secret = 'whsec_bench_signing_secret'
  const app = await buildApp(loadConfig({
    NODE_ENV: 'production',
    LOG_LEVEL: 'warn',
    DATABASE_URL: o.databaseUrl,
    REDIS_URL: o.redisUrl,
    CLOUD_PROVIDER: 'simulated',
    REDIS_PREFIX: `bench-webhooks:${randomBytes(4).toString('hex')}:`,
    JWT_PRIVATE_KEY: o.privateKey,
    STRIPE_SECRET_KEY: 'sk_test_bench',
    STRIPE_WEBHOOK_SECRET: secret,
    STRIPE_API_URL: 'http://127.0.0.1:9',
    WORKER_CONCURRENCY: '8',
    RATE_LIMIT_ENABLED: 'false'
  }), { logger: false })
  try {
    await app.ready()
    // One user and Stripe customer per event.
    const users = await app.db.insertInto('account')
      .values(Array.from({ length: o.events }, (_, i) => ({ email: `webhook-bench-${i}-${randomBytes(3).toString('hex')}@example.test`, name: `Webhook ${i}`, email_verified_at: new Date() })))
      .returning('id').execute()
    await app.db.insertInto('billing_customer').values(users.map((u, i) => ({ user_id: u.id, stripe_customer_id: `cus_bench_${i}_${u.id.slice(0, 8)}` }))).execute()
    const now = Math.floor(Date.now() / 1000)
    const deliveries = users.map((u, i) => {
      const payload = JSON.stringify({
        id: `evt_bench_${u.id}`,
        object: 'event',
        type: 'customer.subscription.updated',
        created: now,
        data: { object: { id: `sub_bench_${u.id}`, object: 'subscription', customer: `cus_bench_${i}_${u.id.slice(0, 8)}`, status: 'active', cancel_at_period_end: false, trial_end: null, metadata: { fractal_user_id: u.id, fractal_plan_id: 'pro' }, items: { data: [] } } }
      })
      return { payload, signature: Stripe.webhooks.generateTestHeaderString({ payload, secret }) }
    })
    o.log(`webhooks: delivering ${o.events} signed events`)
    const started = performance.now()
    for (let i = 0; i < deliveries.length; i += 50) {
      await Promise.all(deliveries.slice(i, i + 50).map((d) => app.inject({ method: 'POST', url: '/v1/billing/stripe-webhook', payload: d.payload, headers: { 'content-type': 'application/json', 'stripe-signature': d.signature } })))
    }
    const accepted = performance.now() - started
    const processing = performance.now()
    app.queue.startWorker(8)
    let pending = o.events
    const limit = processing + 120_000
    while (pending > 0 && performance.now() < limit) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      pending = Number((await app.db.selectFrom('stripe_event').select((eb) => eb.fn.countAll<number>().as('n')).where('processed_at', 'is', null).executeTakeFirstOrThrow()).n)
    }
    const processed = performance.now() - processing
    return { events: o.events, acceptedPerSec: o.events / (accepted / 1000), processedPerSec: (o.events - pending) / (processed / 1000), pending }
  } finally {
    await app.close()
  }
}
