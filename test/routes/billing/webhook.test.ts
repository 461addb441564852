import t from 'tap'
import Stripe from 'stripe'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { recipients, startMailbox } from '../../helpers/mailbox.js'
import {
  billingApp, deliver, deliverAndProcess, processed, signedDelivery, stripeEvent, subscribe, testWebhookSecret
} from '../../helpers/stripe-stand-in.js'
import { mailDrained, until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const events = (app: App) => app.db.selectFrom('stripe_event').selectAll().execute()
const subscriptionOf = (app: App, userId: string) => app.db.selectFrom('subscription').selectAll().where('user_id', '=', userId).executeTakeFirst()
const post = (app: App, payload: string, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/billing/stripe-webhook', payload, headers })

function invoice (customer: string, fields: Partial<{ id: string, amount: number, url: string }> = {}) {
  const start = Date.UTC(2030, 2, 1) / 1000
  const end = Date.UTC(2030, 3, 1) / 1000
  return {
    id: fields.id ?? `in_${Math.random().toString(36).slice(2, 12)}`,
    object: 'invoice',
    customer,
    currency: 'usd',
    amount_paid: fields.amount ?? 2900,
    amount_due: fields.amount ?? 2900,
    hosted_invoice_url: fields.url ?? 'https://invoice.stripe.test/i/acct_test/inv_1',
    period_start: start,
    period_end: end,
    lines: { object: 'list', data: [{ id: 'il_1', object: 'line_item', period: { start, end } }] }
  }
}

t.test('stripeWebhook › valid › a signed event is stored once and processed by the job; a redelivery answers duplicate and changes nothing', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  const user = await given(app).signedIn()
  const sub = stripe.putSubscription({ customer: 'cus_unmapped', price: price('pro'), metadata: { fractal_user_id: user.account.id, fractal_plan_id: 'pro' } })
  const event = stripeEvent('customer.subscription.created', sub)

  const res = await deliver(app, event)

  t.equal(res.statusCode, 200)
  t.same(res.json(), { received: true, duplicate: false })
  const [stored, ...more] = await events(app)
  t.equal(more.length, 0)
  t.match(stored, { id: event.id, type: 'customer.subscription.created', processed_at: null, error: null })
  t.same(stored!.payload, event, 'the verified event as Stripe sent it')
  t.equal(await subscriptionOf(app, user.account.id), undefined, 'processing is the worker\'s job, not the request\'s')

  app.queue.startWorker(2)
  t.ok(await processed(app, event.id), 'the job processed it')
  const row = await subscriptionOf(app, user.account.id)
  t.match(row, { stripe_subscription_id: sub.id, plan_id: 'pro', status: 'active', cancel_at_period_end: false, event_created: String(event.created) })

  const again = await deliver(app, event)
  t.equal(again.statusCode, 200)
  t.same(again.json(), { received: true, duplicate: true })
  t.equal((await events(app)).length, 1, 'stored once')
  await mailDrained(app)
  t.same(await subscriptionOf(app, user.account.id), row, 'nothing changed')
  const counts = await app.queue.counts('accounts')
  t.equal(counts.waiting + counts.active + counts.delayed, 0, 'no second job')
})

t.test('stripeWebhook › valid › an older event (smaller created) never overwrites a newer state, whatever the order of arrival', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const meta = { fractal_user_id: user.account.id, fractal_plan_id: 'pro' }
  const base = stripe.putSubscription({ customer: 'cus_ordering', price: price('pro'), metadata: meta })
  const at = (status: string, cancelAtPeriodEnd = false) => ({ ...base, status, cancel_at_period_end: cancelAtPeriodEnd })

  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', at('active', true), { created: 2_000_000_200 }))
  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', at('past_due'), { created: 2_000_000_100 }))
  await deliverAndProcess(app, stripeEvent('customer.subscription.created', at('incomplete'), { created: 2_000_000_000 }))

  t.match(await subscriptionOf(app, user.account.id), { status: 'active', cancel_at_period_end: true, past_due_since: null, event_created: '2000000200' })

  await deliverAndProcess(app, stripeEvent('customer.subscription.deleted', at('canceled'), { created: 2_000_000_300 }))
  t.match(await subscriptionOf(app, user.account.id), { status: 'canceled', event_created: '2000000300' }, 'a newer one does')
})

t.test('stripeWebhook › valid › invoice.paid mails a receipt, once even when Stripe redelivers it', async (t) => {
  const mailbox = await startMailbox(t)
  const { app, stripe } = await billingApp(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const user = await given(app).signedIn({ name: 'Ada Lovelace' })
  const { customer } = await subscribe(app, stripe, user.headers, 'pro', { status: 'active' })
  const paid = stripeEvent('invoice.paid', invoice(customer, { amount: 2900, url: 'https://invoice.stripe.test/i/acct_test/inv_42' }))

  await deliverAndProcess(app, paid)
  const mail = await mailbox.waitFor((m) => recipients(m).includes(user.account.email) && /receipt/.test(m.subject ?? ''))

  t.equal(mail.subject, 'Your Fractal receipt for $29.00')
  t.match(mail.text, /^Hi Ada Lovelace,/)
  t.match(mail.text, /Amount: \$29\.00/)
  t.match(mail.text, /Period: March 1, 2030 to April 1, 2030/)
  t.match(mail.text, /https:\/\/invoice\.stripe\.test\/i\/acct_test\/inv_42/)

  const again = await deliver(app, paid)
  t.same(again.json(), { received: true, duplicate: true })
  t.ok(await mailDrained(app))
  t.equal(mailbox.messages.filter((m) => recipients(m).includes(user.account.email)).length, 1, 'one receipt')
})

t.test('stripeWebhook › valid › invoice.payment_failed mails the user a link to update the payment method', async (t) => {
  const mailbox = await startMailbox(t)
  const { app, stripe } = await billingApp(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const user = await given(app).signedIn({ name: 'Grace Hopper' })
  const { customer } = await subscribe(app, stripe, user.headers, 'starter', { status: 'active' })

  await deliverAndProcess(app, stripeEvent('invoice.payment_failed', invoice(customer, { amount: 900 })))
  const mail = await mailbox.waitFor(user.account.email)

  t.equal(mail.subject, 'Your Fractal payment did not go through')
  t.match(mail.text, /^Hi Grace Hopper,/)
  t.match(mail.text, /\$9\.00/)
  t.ok(mailbox.linkIn(mail, '/billing').startsWith(`${app.config.appUrl}/billing`))
})

t.test('stripeWebhook › valid › invoices and subscriptions of a customer we do not know are recorded, processed and ignored', async (t) => {
  const mailbox = await startMailbox(t)
  const { app, stripe, price } = await billingApp(t, { SMTP_URL: mailbox.url })
  app.queue.startWorker(2)
  const stranger = stripe.putSubscription({ customer: 'cus_someone_else', price: price('pro') })
  const evts = [
    stripeEvent('invoice.paid', invoice('cus_someone_else')),
    stripeEvent('customer.subscription.updated', stranger),
    stripeEvent('customer.deleted', { id: 'cus_someone_else', object: 'customer', deleted: true }),
    stripeEvent('product.updated', { id: 'prod_x', object: 'product' })
  ]
  for (const e of evts) await deliverAndProcess(app, e)

  t.equal((await events(app)).length, 4)
  t.same(await app.db.selectFrom('subscription').selectAll().execute(), [])
  t.ok(await mailDrained(app))
  t.same(mailbox.messages, [], 'no mail')
})

t.test('stripeWebhook › valid › customer.deleted cancels the subscription and forgets the customer', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const { customer } = await subscribe(app, stripe, user.headers, 'pro', { status: 'active' })

  await deliverAndProcess(app, stripeEvent('customer.deleted', stripe.deleteCustomer(customer)))

  t.match(await subscriptionOf(app, user.account.id), { status: 'canceled' })
  t.match(await app.db.selectFrom('billing_customer').selectAll().execute(), [{ stripe_customer_id: customer, deleted_at: Date }], 'forgotten for use, kept to answer later events')
  const view = await app.inject({ method: 'GET', url: '/v1/billing/subscription', headers: user.headers })
  t.match(view.json(), { status: 'canceled' })
  const portal = await app.inject({ method: 'POST', url: '/v1/billing/portal-sessions', headers: user.headers })
  t.equal(portal.statusCode, 404, 'no portal for a customer that is gone')
})

t.test('stripeWebhook › valid › after customer.deleted, a late subscription event created before the deletion does not revive it', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const { customer, subscription } = await subscribe(app, stripe, user.headers, 'pro', { status: 'active', created: 2_000_000_000 })

  // Stripe deletes the customer at 2_000_000_300; an update from 2_000_000_100 arrives late (out of order).
  await deliverAndProcess(app, stripeEvent('customer.deleted', stripe.deleteCustomer(customer), { created: 2_000_000_300 }))
  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', { ...subscription, status: 'active' }, { created: 2_000_000_100 }))

  t.match(await subscriptionOf(app, user.account.id), { status: 'canceled' }, 'the older event does not overwrite the newer deletion')
})

t.test('stripeWebhook › valid › checkout.session.completed fetches the subscription from Stripe and records it', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'pro' }, headers: user.headers })
  const sessionId = new URL(res.json().url).pathname.split('/').pop()!
  const { session, subscription } = stripe.completeCheckout(sessionId)
  stripe.clearRequests()

  await deliverAndProcess(app, stripeEvent('checkout.session.completed', session))

  t.same(stripe.calls('GET', /^\/v1\/subscriptions\//).map((r) => r.path), [`/v1/subscriptions/${subscription.id}`])
  const row = await subscriptionOf(app, user.account.id)
  t.match(row, { stripe_subscription_id: subscription.id, plan_id: 'pro', status: 'trialing', cancel_at_period_end: false })
  t.equal(row!.trial_end!.getTime(), subscription.trial_end * 1000)
  t.equal(subscription.items.data[0].price.id, price('pro'))

  // A one-off payment (mode payment) fetches nothing.
  stripe.clearRequests()
  await deliverAndProcess(app, stripeEvent('checkout.session.completed', { ...session, id: 'cs_test_payment', mode: 'payment', subscription: null }))
  t.same(stripe.requests, [])
})

t.test('stripeWebhook › invalid input › a bad, foreign, stale or missing signature, or a tampered body: 400 and nothing stored', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  const user = await given(app).signedIn()
  const event = stripeEvent('customer.subscription.created', stripe.putSubscription({ customer: 'cus_x', price: price('pro'), metadata: { fractal_user_id: user.account.id } }))
  const payload = JSON.stringify(event)
  const json = { 'content-type': 'application/json' }
  const signed = signedDelivery(event)

  const cases: Array<[string, string, Record<string, string>]> = [
    ['garbage signature', payload, { ...json, 'stripe-signature': 'not-a-signature' }],
    ['a made-up v1', payload, { ...json, 'stripe-signature': `t=${Math.floor(Date.now() / 1000)},v1=${'0'.repeat(64)}` }],
    ['another secret', payload, signedDelivery(event, 'whsec_someone_elses_secret').headers],
    ['tampered body', payload.replace('"customer.subscription.created"', '"customer.subscription.deleted"'), signed.headers],
    ['stale timestamp (replay)', payload, { ...json, 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: testWebhookSecret, timestamp: Math.floor(Date.now() / 1000) - 3600 }) }],
    ['missing header', payload, json],
    ['empty header', payload, { ...json, 'stripe-signature': '' }]
  ]
  for (const [label, body, headers] of cases) {
    const res = await post(app, body, headers)
    t.equal(res.statusCode, 400, label)
    t.match(res.headers['content-type'], /application\/problem\+json/, label)
    t.ok(['bad_request', 'validation_failed'].includes(res.json().code), `${label}: ${res.json().code}`)
  }
  const notJson = signedDelivery('this is not json')
  t.equal((await post(app, notJson.payload, notJson.headers)).statusCode, 400, 'signed, but not JSON')

  t.same(await events(app), [], 'nothing stored')
  t.equal((await app.queue.counts('accounts')).waiting, 0, 'nothing queued')
  t.equal((await post(app, signed.payload, signed.headers)).statusCode, 200, 'the genuine delivery is accepted')
})

t.test('stripeWebhook › invalid input › a body that is not JSON is 415; too large a body is 413; nothing stored', async (t) => {
  const { app } = await billingApp(t)
  const event = stripeEvent('product.updated', { id: 'prod_x', object: 'product' })
  const { payload, headers } = signedDelivery(event)
  for (const type of ['text/plain', 'application/x-www-form-urlencoded', 'application/xml']) {
    const res = await post(app, payload, { ...headers, 'content-type': type })
    t.equal(res.statusCode, 415, type)
    t.match(res.json(), { code: 'unsupported_media_type' }, type)
  }
  const huge = JSON.stringify({ ...event, data: { object: { id: 'prod_x', object: 'product', description: 'x'.repeat(1024 * 1024 + 10) } } })
  const big = await post(app, huge, signedDelivery(huge).headers)
  t.equal(big.statusCode, 413)
  t.same(await events(app), [])
})

t.test('stripeWebhook › faults › Stripe not configured: 503, nothing stored', async (t) => {
  const app = await build(t)
  const event = stripeEvent('product.updated', { id: 'prod_x', object: 'product' })

  const res = await deliver(app, event)

  t.equal(res.statusCode, 503)
  t.match(res.json(), { code: 'unavailable' })
  t.same(await events(app), [])
})

t.test('stripeWebhook › faults › Stripe failing while the job fetches the subscription: the job is retried and the event processed', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'starter' }, headers: user.headers })
  const { session, subscription } = stripe.completeCheckout(new URL(res.json().url).pathname.split('/').pop()!, { status: 'active' })
  const stop = stripe.fail({ method: 'GET', path: `/v1/subscriptions/${subscription.id}` })
  const event = stripeEvent('checkout.session.completed', session)

  t.equal((await deliver(app, event)).statusCode, 200, 'Stripe\'s delivery is acknowledged: the work is ours now')
  t.ok(await until(() => stripe.calls('GET', /^\/v1\/subscriptions\//).length >= 3), 'the first attempt failed')
  t.equal(await subscriptionOf(app, user.account.id), undefined)
  stop()

  t.ok(await processed(app, event.id, 15_000), 'a retry of the job processed it')
  t.match(await subscriptionOf(app, user.account.id), { plan_id: 'starter', status: 'active' })
})

t.test('stripeWebhook › faults › the queue failing as an event arrives: Stripe\'s redelivery still gets it processed', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  const user = await given(app).signedIn()
  const event = stripeEvent('customer.subscription.created', stripe.putSubscription({ customer: 'cus_q', price: price('pro'), metadata: { fractal_user_id: user.account.id, fractal_plan_id: 'pro' } }))
  const enqueue = app.queue.enqueue
  let broken = true
  app.queue.enqueue = (async (...args: Parameters<typeof enqueue>) => {
    if (broken) throw new Error('Connection is closed.')
    return enqueue.apply(app.queue, args)
  }) as typeof enqueue

  const first = await deliver(app, event)
  t.ok(first.statusCode >= 500, `Stripe is told to try again (${first.statusCode})`)
  broken = false
  app.queue.startWorker(2)

  const redelivered = await deliver(app, event)
  t.equal(redelivered.statusCode, 200)
  t.ok(await processed(app, event.id, 3000), 'the event is processed in the end, not lost')
  t.match(await subscriptionOf(app, user.account.id), { status: 'active' })
})
