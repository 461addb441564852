import Stripe from 'stripe'
import t from 'tap'
import { billingApp, stripeEvent, testWebhookSecret } from '../../helpers/stripe-stand-in.js'

// constructEvent refuses a signature older than its tolerance (300 s): a captured delivery cannot be replayed later.
t.test('stripeWebhook › invalid input › a signature ten minutes old is refused and nothing is stored; a fresh one of the same body is accepted', async (t) => {
  const { app } = await billingApp(t, {}, { sync: false })
  const payload = JSON.stringify(stripeEvent('customer.subscription.updated', { id: 'sub_old', object: 'subscription', customer: 'cus_unknown', status: 'active' }, { id: 'evt_old_timestamp' }))
  const old = Stripe.webhooks.generateTestHeaderString({ payload, secret: testWebhookSecret, timestamp: Math.floor(Date.now() / 1000) - 600 })
  const send = (signature: string) => app.inject({ method: 'POST', url: '/v1/billing/stripe-webhook', payload, headers: { 'content-type': 'application/json', 'stripe-signature': signature } })

  const refused = await send(old)

  t.equal(refused.statusCode, 400)
  t.match(refused.json(), { code: 'bad_request', detail: /tolerance|timestamp/i })
  t.same(await app.db.selectFrom('stripe_event').select('id').where('id', '=', 'evt_old_timestamp').execute(), [])
  const fresh = await send(Stripe.webhooks.generateTestHeaderString({ payload, secret: testWebhookSecret }))
  t.equal(fresh.statusCode, 200)
  t.same(fresh.json(), { received: true, duplicate: false })
})
