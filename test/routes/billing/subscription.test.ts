import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'
import { billingApp, deliverAndProcess, stripeEvent, subscribe } from '../../helpers/stripe-stand-in.js'

type App = Awaited<ReturnType<typeof build>>
const mine = (app: App, headers: Record<string, string>) => app.inject({ method: 'GET', url: '/v1/billing/subscription', headers })
const iso = (seconds: number) => new Date(seconds * 1000).toISOString()

t.test('getSubscription › valid › before anything: the free trial from sign-up, no plan, no period, no usage', async (t) => {
  const { app, stripe } = await billingApp(t, { BILLING_TRIAL_DAYS: '10' })
  const user = await given(app).signedIn()

  const res = await mine(app, user.headers)

  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    plan: null,
    status: 'free_trial',
    trialEnd: new Date(user.account.created_at.getTime() + 10 * 86_400_000).toISOString(),
    currentPeriodStart: null,
    currentPeriodEnd: null,
    cancelAtPeriodEnd: false,
    usage: { containerHours: 0 }
  })
  t.match(res.headers['cache-control'], /no-store/)
  t.same(stripe.requests, [], 'from local state: Stripe is never asked')
})

t.test('getSubscription › valid › the trial over and no subscription: status none', async (t) => {
  const { app } = await billingApp(t)
  const user = await given(app).signedIn()
  await app.db.updateTable('account').set({ created_at: new Date(Date.now() - 30 * 86_400_000) }).where('id', '=', user.account.id).execute()

  const res = await mine(app, user.headers)

  t.match(res.json(), { plan: null, status: 'none', currentPeriodStart: null })
  t.ok(new Date(res.json().trialEnd).getTime() < Date.now(), 'the trial ended in the past')
})

t.test('getSubscription › valid › follows the webhooks: created (trialing), updated (active, cancel at period end), deleted', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()

  const { subscription: sub } = await subscribe(app, stripe, user.headers, 'pro', { created: 1_900_000_000 })
  const trialing = (await mine(app, user.headers)).json()
  const item = sub.items.data[0]
  t.same(trialing, {
    plan: { id: 'pro', name: 'Pro' },
    status: 'trialing',
    trialEnd: iso(sub.trial_end),
    currentPeriodStart: iso(item.current_period_start),
    currentPeriodEnd: iso(item.current_period_end),
    cancelAtPeriodEnd: false,
    usage: { containerHours: 0 }
  })

  const start = 1_900_100_000
  const end = start + 30 * 86_400
  const active = stripe.putSubscription({ id: sub.id, customer: sub.customer, price: price('starter'), status: 'active', metadata: sub.metadata, periodStart: start, periodEnd: end, cancelAtPeriodEnd: true })
  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', active, { created: 1_900_000_100 }))
  t.match((await mine(app, user.headers)).json(), {
    plan: { id: 'starter', name: 'Starter' },
    status: 'active',
    currentPeriodStart: iso(start),
    currentPeriodEnd: iso(end),
    cancelAtPeriodEnd: true,
    usage: { containerHours: 0 }
  }, 'the plan follows the price (a downgrade in the portal); no Stripe trial any more')

  const ended = { ...active, status: 'canceled' }
  await deliverAndProcess(app, stripeEvent('customer.subscription.deleted', ended, { created: 1_900_000_200 }))
  t.match((await mine(app, user.headers)).json(), { plan: { id: 'starter' }, status: 'canceled' })
  t.equal(stripe.calls('GET', /^\/v1\/subscriptions\//).length, 0, 'subscription events carry the object: nothing fetched')
})

t.test('getSubscription › valid › container hours of the current period only, and only the user\'s own', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  app.queue.startWorker(2)
  const user = await given(app).signedIn()
  const other = await given(app).signedIn()
  await app.db.updateTable('account').set({ created_at: new Date(Date.now() - 3 * 86_400_000) }).where('id', '=', other.account.id).execute()
  const { subscription: sub } = await subscribe(app, stripe, user.headers, 'pro')
  const periodStart = new Date(Date.now() - 10 * 86_400_000)
  const updated = stripe.putSubscription({ id: sub.id, customer: sub.customer, price: price('pro'), metadata: sub.metadata, periodStart: Math.floor(periodStart.getTime() / 1000) })
  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', updated))

  const usage = (userId: string, seconds: number, daysAgo: number) =>
    ({ container_id: randomUUID(), user_id: userId, seconds, ended_at: new Date(Date.now() - daysAgo * 86_400_000) })
  await app.db.insertInto('usage_record').values([
    usage(user.account.id, 3600, 1),
    usage(user.account.id, 5400, 9),
    usage(user.account.id, 36_000, 11), // the last period
    usage(other.account.id, 7200, 1)
  ]).execute()

  const res = await mine(app, user.headers)

  t.equal(res.json().usage.containerHours, 2.5)
  t.equal((await mine(app, other.headers)).json().usage.containerHours, 2, 'without a subscription: everything since sign-up')
})

t.test('getSubscription › insufficient permissions › no token or a bad one is 401, a token without the account scope 403', async (t) => {
  const { app } = await billingApp(t)
  const none = await app.inject({ method: 'GET', url: '/v1/billing/subscription' })
  t.equal(none.statusCode, 401)
  t.match(none.headers['content-type'], /application\/problem\+json/)
  t.match(none.json(), { code: 'unauthorized' })
  t.equal((await mine(app, bearer('garbage'))).statusCode, 401)
  const narrow = await mine(app, bearer(await given(app).token({ scopes: ['containers'] })))
  t.equal(narrow.statusCode, 403)
  t.match(narrow.json(), { code: 'forbidden' })
})

t.test('getSubscription › valid › one user never sees another\'s subscription', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const payer = await given(app).signedIn()
  const stranger = await given(app).signedIn()
  await subscribe(app, stripe, payer.headers, 'pro', { status: 'active' })

  t.match((await mine(app, payer.headers)).json(), { plan: { id: 'pro' }, status: 'active' })
  t.match((await mine(app, stranger.headers)).json(), { plan: null, status: 'free_trial' })
})
