// Issue 19: deleting an account left its Stripe subscription running (only the containers step was
// registered, while the README said billing added its own). Billing's deletion step cancels the subscription
// and deletes the customer at Stripe (the stand-in), idempotently: a retried job, a second run, and a
// customer deleted at Stripe already all end in the same state.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { closeBillingAccount } from '../../../services/billing/billing.service.js'
import { createStripeClient } from '../../../services/billing/billing.stripe.js'
import { given } from '../../helpers/given.js'
import { billingApp, deliver, processed, stripeEvent, subscribe } from '../../helpers/stripe-stand-in.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof billingApp>>['app']
const deleteMe = (app: App, headers: Record<string, string>) => app.inject({ method: 'DELETE', url: '/v1/users/me', headers })
const accountGone = (app: App, id: string) => until(async () => !(await app.db.selectFrom('account').select('id').where('id', '=', id).executeTakeFirst()), 30_000)

t.test('deleteMe › valid › the subscription is cancelled and the Stripe customer deleted before the account row goes', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const { subscription, customer } = await subscribe(app, stripe, user.headers, 'starter')
  t.equal(stripe.subscriptions.get(subscription.id)!.status, 'trialing', 'running (in its trial)')
  stripe.clearRequests()

  t.equal((await deleteMe(app, user.headers)).statusCode, 204)
  t.ok(await accountGone(app, user.account.id), 'the account row is purged')

  t.equal(stripe.subscriptions.get(subscription.id)!.status, 'canceled', 'cancelled at Stripe')
  t.equal(stripe.customers.get(customer)!.deleted, true, 'the customer deleted at Stripe')
  t.same(stripe.requests.map((r) => `${r.method} ${r.path}`), ['GET /v1/subscriptions', `DELETE /v1/subscriptions/${subscription.id}`, `DELETE /v1/customers/${customer}`],
    'what is running is asked, cancelled, then the customer goes')
  t.match(stripe.requests[0]!.query, { customer })
})

t.test('deleteMe › faults › Stripe answering 500 fails the attempt; the retried job finishes, each subscription cancelled once', async (t) => {
  const { app, stripe } = await billingApp(t, { QUEUE_RETRY_BACKOFF_MS: '10' })
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const { subscription, customer } = await subscribe(app, stripe, user.headers, 'starter')
  stripe.clearRequests()
  // More 500s than the Stripe client retries by itself (2): the job's attempt fails.
  stripe.fail({ method: 'DELETE', path: `/v1/customers/${customer}` }, { times: 3 })

  t.equal((await deleteMe(app, user.headers)).statusCode, 204)
  t.ok(await accountGone(app, user.account.id), 'purged by a later attempt')

  t.equal(stripe.calls('DELETE', `/v1/customers/${customer}`).length, 4, 'three 500s, then deleted')
  t.same(stripe.calls('DELETE', `/v1/subscriptions/${subscription.id}`).map((r) => r.status), [200], 'cancelled once: the retry found nothing running')
  t.equal(stripe.calls('GET', '/v1/subscriptions').length, 2, 'each attempt asked Stripe what is running')
  t.equal(stripe.customers.get(customer)!.deleted, true)
})

t.test('deleteMe › valid › the billing step run twice, or after the customer was deleted in the dashboard, ends the same (idempotent)', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(1)
  const gone = await given(app).signedIn()
  const twice = await given(app).signedIn()
  const atGone = await subscribe(app, stripe, gone.headers, 'starter')
  const atTwice = await subscribe(app, stripe, twice.headers, 'starter')
  stripe.clearRequests()
  const deps = { stripe: await createStripeClient(app.config.billing) }

  // Deleted in the dashboard (which cancels its subscriptions); our rows have not heard yet.
  stripe.deleteCustomer(atGone.customer)
  t.same(await closeBillingAccount(app.db, deps, gone.account.id), { cancelled: 0, customerDeleted: false }, '404 resource_missing counts as done')
  t.same(stripe.calls('DELETE', `/v1/customers/${atGone.customer}`).map((r) => r.status), [404])

  t.same(await closeBillingAccount(app.db, deps, twice.account.id), { cancelled: 1, customerDeleted: true })
  const calls = stripe.requests.length
  t.same(await closeBillingAccount(app.db, deps, twice.account.id), { cancelled: 0, customerDeleted: false }, 'a second run')
  t.same(await closeBillingAccount(app.db, deps, gone.account.id), { cancelled: 0, customerDeleted: false })
  t.equal(stripe.requests.length, calls, 'asks Stripe nothing: the rows say it is done')
  t.equal(stripe.subscriptions.get(atTwice.subscription.id)!.status, 'canceled')
  for (const id of [gone.account.id, twice.account.id]) {
    const row = await app.db.selectFrom('billing_customer').select('deleted_at').where('user_id', '=', id).executeTakeFirstOrThrow()
    t.ok(row.deleted_at, 'the customer row says deleted')
    t.match(await app.db.selectFrom('subscription').select('status').where('user_id', '=', id).executeTakeFirstOrThrow(), { status: 'canceled' })
  }
})

t.test('deleteMe › valid › an account that never paid costs no Stripe call', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(1)
  const user = await given(app).signedIn()
  t.equal((await deleteMe(app, user.headers)).statusCode, 204)
  t.ok(await accountGone(app, user.account.id))
  t.same(stripe.requests, [])
})

t.test('deleteMe › valid › every deletion step may run again over what an earlier run left (a retried purge job)', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(1)
  const { user, container } = await given(app).assignedContainer()
  t.ok(container.id, 'holds a container')
  await subscribe(app, stripe, user.headers, 'starter')
  t.ok(app.accountDeletionSteps.length >= 2, 'containers and billing')
  for (const run of [1, 2, 3]) {
    for (const step of app.accountDeletionSteps) await t.resolves(step(user.account.id), `run ${run}`)
  }
})

t.test('processStripeEvent › valid › the events of a subscription cancelled by an account deletion arrive after the account: processed, nothing kept', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(1)
  const user = await given(app).signedIn()
  const { subscription } = await subscribe(app, stripe, user.headers, 'starter')
  t.equal((await deleteMe(app, user.headers)).statusCode, 204)
  t.ok(await accountGone(app, user.account.id))

  const event = stripeEvent('customer.subscription.deleted', { ...stripe.subscriptions.get(subscription.id)!, id: subscription.id }, { id: `evt_${randomUUID()}` })
  t.equal((await deliver(app, event)).statusCode, 200)
  t.ok(await processed(app, event.id), 'processed, not failed and retried')
  const row = await app.db.selectFrom('stripe_event').select(['error']).where('id', '=', event.id).executeTakeFirstOrThrow()
  t.equal(row.error, null)
  t.same(await app.db.selectFrom('subscription').selectAll().where('user_id', '=', user.account.id).execute(), [])
})
