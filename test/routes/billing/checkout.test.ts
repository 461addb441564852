import t from 'tap'
import { seedCatalog } from '../../../db/seed.js'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { billingApp, deliverAndProcess, stripeEvent } from '../../helpers/stripe-stand-in.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const checkout = (app: App, headers: Record<string, string>, payload: unknown = { plan: 'pro' }) =>
  app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: payload as object, headers })
const customerRows = (app: App) => app.db.selectFrom('billing_customer').selectAll().execute()

t.test('createCheckoutSession › valid › answers Stripe\'s Checkout URL for the plan\'s price, with Stripe Tax, the user\'s new customer and the trial', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  const user = await given(app).signedIn({ name: 'Ada Lovelace' })

  const res = await checkout(app, user.headers, { plan: 'pro' })

  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['expiresAt', 'url'])
  const [session] = [...stripe.checkoutSessions.values()]
  t.equal(body.url, session!.url, 'the stand-in\'s Checkout URL')
  t.equal(body.expiresAt, new Date(session!.expires_at * 1000).toISOString())

  const [customerCall, ...moreCustomers] = stripe.calls('POST', '/v1/customers')
  t.equal(moreCustomers.length, 0, 'one customer created')
  t.same(customerCall!.body, { email: user.account.email, name: 'Ada Lovelace', 'metadata[fractal_user_id]': user.account.id })
  t.equal(customerCall!.idempotencyKey, `fractal-customer-${user.account.id}`, 'guarded by an idempotency key per user')
  const customer = [...stripe.customers.keys()][0]!
  t.match(await customerRows(app), [{ user_id: user.account.id, stripe_customer_id: customer }])

  const [sent, ...others] = stripe.calls('POST', '/v1/checkout/sessions')
  t.equal(others.length, 0)
  t.same(sent!.body, {
    mode: 'subscription',
    customer,
    client_reference_id: user.account.id,
    'line_items[0][price]': price('pro'),
    'line_items[0][quantity]': '1',
    'automatic_tax[enabled]': 'true',
    'customer_update[address]': 'auto',
    'subscription_data[metadata][fractal_user_id]': user.account.id,
    'subscription_data[metadata][fractal_plan_id]': 'pro',
    'subscription_data[trial_period_days]': '7',
    success_url: `${app.config.appUrl}/billing?checkout=success`,
    cancel_url: `${app.config.appUrl}/billing?checkout=cancelled`
  })
  t.equal(sent!.authorization, 'Bearer sk_test_fractal_stand_in', 'the configured secret key')
})

t.test('createCheckoutSession › valid › the hourly plan: its metered price without a quantity, and no trial', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  const user = await given(app).signedIn()

  const res = await checkout(app, user.headers, { plan: 'pay-as-you-go' })

  t.equal(res.statusCode, 201)
  const [sent] = stripe.calls('POST', '/v1/checkout/sessions')
  t.equal(sent!.body['line_items[0][price]'], price('pay-as-you-go'))
  t.notOk('line_items[0][quantity]' in sent!.body, 'metered prices take no quantity')
  t.notOk('subscription_data[trial_period_days]' in sent!.body, 'no trial for the hourly plan')
  t.equal(sent!.body['automatic_tax[enabled]'], 'true')
})

t.test('createCheckoutSession › valid › a second checkout reuses the user\'s Stripe customer; another user gets their own', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  const other = await given(app).signedIn()

  const first = await checkout(app, user.headers, { plan: 'starter' })
  const second = await checkout(app, user.headers, { plan: 'pro' })
  const third = await checkout(app, other.headers, { plan: 'pro' })

  t.same([first.statusCode, second.statusCode, third.statusCode], [201, 201, 201])
  t.not(first.json().url, second.json().url, 'a new Checkout session each time')
  t.equal(stripe.calls('POST', '/v1/customers').length, 2, 'one customer per user, created once')
  const [a, b, c] = stripe.calls('POST', '/v1/checkout/sessions')
  t.equal(a!.body.customer, b!.body.customer, 'the same customer for the same user')
  t.not(c!.body.customer, a!.body.customer)
  t.equal((await customerRows(app)).length, 2)
})

t.test('createCheckoutSession › valid › concurrent first checkouts of one user make one Stripe customer and one row', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  // Hold Stripe's customer creation until every request has asked for it: they all found no customer row.
  const held = stripe.hold({ method: 'POST', path: '/v1/customers' })

  const pending = Array.from({ length: 4 }, () => checkout(app, user.headers, { plan: 'pro' }))
  t.ok(await until(() => held.arrived === 4), 'the four requests all reached customer creation')
  held.release()
  const answers = await Promise.all(pending)

  t.same(answers.map((r) => r.statusCode), [201, 201, 201, 201])
  t.equal(new Set(stripe.calls('POST', '/v1/customers').map((r) => r.idempotencyKey)).size, 1, 'all with the same idempotency key')
  t.equal(stripe.customers.size, 1, 'Stripe made one customer')
  const rows = await customerRows(app)
  t.equal(rows.length, 1, 'one customer row')
  const sessions = stripe.calls('POST', '/v1/checkout/sessions')
  t.equal(sessions.length, 4)
  t.ok(sessions.every((s) => s.body.customer === rows[0]!.stripe_customer_id), 'every checkout for that customer')
})

t.test('createCheckoutSession › valid › after Stripe deleted the customer (customer.deleted), a new checkout makes a new customer', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  t.equal((await checkout(app, user.headers)).statusCode, 201)
  const [old] = await customerRows(app)

  // Deleted in the dashboard; Stripe tells us.
  await deliverAndProcess(app, stripeEvent('customer.deleted', stripe.deleteCustomer(old!.stripe_customer_id)))
  t.match(await customerRows(app), [{ stripe_customer_id: old!.stripe_customer_id, deleted_at: Date }], 'the mapping is marked deleted')

  const again = await checkout(app, user.headers)

  t.equal(again.statusCode, 201, `a new checkout works (${again.body})`)
  const [fresh] = await customerRows(app)
  t.ok(fresh, 'a customer row again')
  t.not(fresh?.stripe_customer_id, old!.stripe_customer_id, 'a new Stripe customer, not the deleted one')
})

t.test('createCheckoutSession › insufficient permissions › no token or a bad one is 401, a token without the account scope 403; Stripe is not called', async (t) => {
  const { app, stripe } = await billingApp(t)
  const none = await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'pro' } })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /application\/problem\+json/)
  t.match(none.json(), { code: 'unauthorized' })
  t.equal((await checkout(app, bearer('not-a-jwt'))).statusCode, 401)
  const narrow = await checkout(app, bearer(await given(app).token({ scopes: ['containers'] })))
  t.equal(narrow.statusCode, 403)
  t.match(narrow.json(), { code: 'forbidden' })
  t.same(stripe.requests, [], 'nothing reached Stripe')
  t.same(await customerRows(app), [])
})

t.test('createCheckoutSession › invalid input › unknown field, bad plan id, missing plan, wrong type or content type: 400/415, nothing sent', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  const cases: Array<[unknown, string]> = [
    [{ plan: 'pro', coupon: 'FREE' }, '/body/coupon'],
    [{ plan: 'Pro' }, '/body/plan'],
    [{ plan: 'pro plan' }, '/body/plan'],
    [{ plan: 'x'.repeat(41) }, '/body/plan'],
    [{ plan: '' }, '/body/plan'],
    [{ plan: 7 }, '/body/plan'],
    [{}, '/body/plan']
  ]
  for (const [payload, field] of cases) {
    const res = await checkout(app, user.headers, payload)
    t.equal(res.statusCode, 400, JSON.stringify(payload))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { code: 'validation_failed', errors: [{ field }] }, JSON.stringify(payload))
  }
  const text = await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: 'plan=pro', headers: { ...user.headers, 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415)
  t.match(text.json(), { code: 'unsupported_media_type' })
  t.same(stripe.requests, [], 'nothing reached Stripe')
  t.same(await customerRows(app), [])
})

t.test('createCheckoutSession › non-existing › an unknown plan, a retired plan or one not synced to Stripe is 404; no customer is made', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  await app.db.updateTable('plan').set({ active: false }).where('id', '=', 'starter').execute()
  await app.db.updateTable('plan').set({ stripe_price_id: null }).where('id', '=', 'pro').execute()

  for (const plan of ['enterprise', 'starter', 'pro']) {
    const res = await checkout(app, user.headers, { plan })
    t.equal(res.statusCode, 404, plan)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { code: 'not_found', detail: `Plan ${plan} does not exist.` })
  }
  t.same(stripe.requests, [], 'no customer made for a plan that cannot be bought')
  t.same(await customerRows(app), [])
})

t.test('createCheckoutSession › faults › Stripe answering 500 is a 5xx problem after the client\'s retries; the next checkout works', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  const stop = stripe.fail({ method: 'POST', path: '/v1/checkout/sessions' })

  const res = await checkout(app, user.headers)

  t.ok(res.statusCode >= 500, `a server-side problem (${res.statusCode})`)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.ok(['internal', 'unavailable'].includes(res.json().code), res.json().code)
  t.notMatch(res.body, /sk_test|stand-in|api_error/, 'Stripe\'s answer and our key are not passed on')
  const attempts = stripe.calls('POST', '/v1/checkout/sessions')
  t.equal(attempts.length, 3, 'the first try and two retries')
  t.equal(new Set(attempts.map((a) => a.idempotencyKey)).size, 1, 'retries reuse one idempotency key')

  stop()
  const again = await checkout(app, user.headers)
  t.equal(again.statusCode, 201, 'the app is fine once Stripe is')
  t.equal(stripe.customers.size, 1, 'the customer made before the failure is reused')
})

t.test('createCheckoutSession › faults › one 500 from Stripe is retried by the client: the user sees 201', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  stripe.fail({ method: 'POST', path: '/v1/checkout/sessions' }, { times: 1 })

  const res = await checkout(app, user.headers)

  t.equal(res.statusCode, 201)
  t.equal(stripe.calls('POST', '/v1/checkout/sessions').length, 2)
  t.equal(stripe.checkoutSessions.size, 1)
})

t.test('createCheckoutSession › faults › Stripe rejecting our API key is a 5xx problem, never a 401 that would sign the user out', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  stripe.fail({ method: 'POST', path: '/v1/customers' }, { status: 401, error: { type: 'invalid_request_error', message: 'Invalid API Key provided: sk_test_****_in' } })

  const res = await checkout(app, user.headers)

  t.ok(res.statusCode >= 500, `our misconfiguration is not the caller's fault (got ${res.statusCode} ${res.json().code})`)
  t.notMatch(res.body, /API Key|sk_test/, 'the key is not echoed')
})

t.test('createCheckoutSession › faults › Stripe not configured (no STRIPE_SECRET_KEY): 503 unavailable', async (t) => {
  const app = await build(t)
  await seedCatalog(app.db)
  const user = await given(app).signedIn()

  const res = await checkout(app, user.headers)

  t.equal(res.statusCode, 503)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { code: 'unavailable', detail: 'Billing is not configured on this server.' })
})
