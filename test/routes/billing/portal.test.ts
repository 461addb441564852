import t from 'tap'
import { seedCatalog } from '../../../db/seed.js'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { billingApp } from '../../helpers/stripe-stand-in.js'

type App = Awaited<ReturnType<typeof build>>
const portal = (app: App, headers: Record<string, string>) => app.inject({ method: 'POST', url: '/v1/billing/portal-sessions', headers })

t.test('createPortalSession › valid › after a checkout: Stripe\'s portal URL for the user\'s customer, returning to the billing page', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'starter' }, headers: user.headers })).statusCode, 201)
  const customer = (await app.db.selectFrom('billing_customer').select('stripe_customer_id').where('user_id', '=', user.account.id).executeTakeFirstOrThrow()).stripe_customer_id
  stripe.clearRequests()

  const res = await portal(app, user.headers)

  t.equal(res.statusCode, 201)
  t.same(res.json(), { url: stripe.portalSessions[0]!.url })
  const [sent, ...more] = stripe.calls('POST', '/v1/billing_portal/sessions')
  t.equal(more.length, 0)
  t.same(sent!.body, { customer, return_url: `${app.config.appUrl}/billing` })
  t.equal(stripe.calls('POST', '/v1/customers').length, 0, 'no new customer')
})

t.test('createPortalSession › valid › each user gets a portal of their own customer only', async (t) => {
  const { app, stripe } = await billingApp(t)
  const alice = await given(app).signedIn()
  const bob = await given(app).signedIn()
  for (const u of [alice, bob]) await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'pro' }, headers: u.headers })
  const customers = await app.db.selectFrom('billing_customer').select(['user_id', 'stripe_customer_id']).execute()
  const of = (id: string) => customers.find((c) => c.user_id === id)!.stripe_customer_id

  t.equal((await portal(app, alice.headers)).statusCode, 201)
  t.equal((await portal(app, bob.headers)).statusCode, 201)

  t.same(stripe.calls('POST', '/v1/billing_portal/sessions').map((r) => r.body.customer), [of(alice.account.id), of(bob.account.id)])
})

t.test('createPortalSession › non-existing › before any checkout: 404 not_found, and Stripe is not called', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()

  const res = await portal(app, user.headers)

  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { code: 'not_found', title: 'No billing account' })
  t.match(res.json().detail, /checkout/)
  t.same(stripe.requests, [])
  t.same(await app.db.selectFrom('billing_customer').selectAll().execute(), [], 'no customer made by asking')
})

t.test('createPortalSession › insufficient permissions › no token or a bad one is 401, a token without the account scope 403', async (t) => {
  const { app, stripe } = await billingApp(t)
  const none = await app.inject({ method: 'POST', url: '/v1/billing/portal-sessions' })
  t.equal(none.statusCode, 401)
  t.match(none.json(), { code: 'unauthorized' })
  t.equal((await portal(app, bearer('eyJhbGciOiJub25lIn0.e30.'))).statusCode, 401)
  const narrow = await portal(app, bearer(await given(app).token({ scopes: ['containers'] })))
  t.equal(narrow.statusCode, 403)
  t.match(narrow.json(), { code: 'forbidden' })
  t.same(stripe.requests, [])
})

t.test('createPortalSession › faults › Stripe answering 500 is a 5xx problem; Stripe not configured is 503', async (t) => {
  const { app, stripe } = await billingApp(t)
  const user = await given(app).signedIn()
  await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan: 'pro' }, headers: user.headers })
  stripe.fail({ method: 'POST', path: '/v1/billing_portal/sessions' })
  const res = await portal(app, user.headers)
  t.ok(res.statusCode >= 500, String(res.statusCode))
  t.match(res.headers['content-type'], /application\/problem\+json/)

  const bare = await build(t)
  await seedCatalog(bare.db)
  const someone = await given(bare).signedIn()
  const unconfigured = await portal(bare, someone.headers)
  t.equal(unconfigured.statusCode, 503)
  t.match(unconfigured.json(), { code: 'unavailable' })
})
