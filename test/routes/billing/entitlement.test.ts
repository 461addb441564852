// assignContainer as billing decides it: the trial, the subscription's state and the plan's limits.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { billingApp, deliverAndProcess, stripeEvent, subscribe } from '../../helpers/stripe-stand-in.js'

type App = Awaited<ReturnType<typeof build>>
const assign = (app: App, headers: Record<string, string>, body: object) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': randomUUID() } })
const liveContainers = (app: App, userId: string) => app.db.selectFrom('container').select('id').where('user_id', '=', userId).execute()
const trialOver = (app: App, userId: string) =>
  app.db.updateTable('account').set({ created_at: new Date(Date.now() - 30 * 86_400_000) }).where('id', '=', userId).execute()

/** A signed-in user past the free trial, subscribed to `plan` in `status` (the worker must run). */
async function subscriber (app: App, stripe: Awaited<ReturnType<typeof billingApp>>['stripe'], plan: string, status = 'active') {
  const user = await given(app).signedIn()
  await trialOver(app, user.account.id)
  const sub = await subscribe(app, stripe, user.headers, plan, { status })
  return { ...user, ...sub }
}

t.test('assignContainer › insufficient permissions › payment: past the trial without a subscription is 402 pointing to checkout; nothing is made', async (t) => {
  const { app, stripe } = await billingApp(t)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  await trialOver(app, user.account.id)

  const res = await assign(app, user.headers, { app: offer.app })

  t.equal(res.statusCode, 402)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { status: 402, code: 'payment_required', title: 'Payment required' })
  t.match(res.json().detail, /free trial has ended/)
  t.match(res.json().detail, /POST \/v1\/billing\/checkout-sessions/, 'says where to pay')
  t.same(await liveContainers(app, user.account.id), [], 'no container handed out')
  t.same(stripe.requests, [], 'decided from local state: Stripe is not asked')
})

t.test('assignContainer › valid › within the free trial a new user streams, up to BILLING_TRIAL_CONTAINERS at once', async (t) => {
  const { app } = await billingApp(t, { BILLING_TRIAL_CONTAINERS: '1' })
  const first = await given(app).offer()
  const second = await given(app).offer()
  await given(app).warmContainer(first)
  const user = await given(app).signedIn()

  const ok = await assign(app, user.headers, { app: first.app, dpi: 480 })
  t.equal(ok.statusCode, 201, 'the trial streams at any DPI')

  const more = await assign(app, user.headers, { app: second.app })
  t.equal(more.statusCode, 409)
  t.match(more.json(), { code: 'conflict', title: 'Plan limit reached' })
})

t.test('assignContainer › valid › an active subscription streams past the trial, a trialing one too', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)
  const active = await subscriber(app, stripe, 'pro', 'active')
  const trialing = await subscriber(app, stripe, 'starter', 'trialing')

  t.equal((await assign(app, active.headers, { app: offer.app })).statusCode, 201)
  t.equal((await assign(app, trialing.headers, { app: offer.app })).statusCode, 201)
})

t.test('assignContainer › insufficient permissions › payment: a canceled or unpaid subscription is 402', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  for (const status of ['canceled', 'unpaid', 'incomplete_expired']) {
    const user = await subscriber(app, stripe, 'pro', status)
    const res = await assign(app, user.headers, { app: offer.app })
    t.equal(res.statusCode, 402, status)
    t.match(res.json(), { code: 'payment_required', detail: new RegExp(`subscription is ${status}.*checkout-sessions`) }, status)
  }
})

t.test('assignContainer › insufficient permissions › payment: past_due streams within the grace period, 402 after it', async (t) => {
  const { app, stripe } = await billingApp(t, { BILLING_PAST_DUE_GRACE_DAYS: '3' })
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const recent = await subscriber(app, stripe, 'pro', 'past_due')
  const long = await subscriber(app, stripe, 'pro', 'past_due')
  t.ok((await app.db.selectFrom('subscription').select('past_due_since').where('user_id', '=', recent.account.id).executeTakeFirstOrThrow()).past_due_since, 'the webhook noted when it fell past due')
  await app.db.updateTable('subscription').set({ past_due_since: new Date(Date.now() - 4 * 86_400_000) }).where('user_id', '=', long.account.id).execute()

  t.equal((await assign(app, recent.headers, { app: offer.app })).statusCode, 201, 'within grace')
  const late = await assign(app, long.headers, { app: offer.app })
  t.equal(late.statusCode, 402, 'past grace')
  t.match(late.json(), { code: 'payment_required', detail: /last payment failed and the grace period is over/ })
})

t.test('assignContainer › insufficient permissions › plan limit: Starter runs one container at once, a second of another app is 409', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const a = await given(app).offer()
  const b = await given(app).offer()
  await given(app).warmContainer(a)
  await given(app).warmContainer(b)
  const user = await subscriber(app, stripe, 'starter')

  t.equal((await assign(app, user.headers, { app: a.app })).statusCode, 201)
  const second = await assign(app, user.headers, { app: b.app })

  t.equal(second.statusCode, 409)
  t.match(second.headers['content-type'], /application\/problem\+json/)
  t.match(second.json(), { code: 'conflict', title: 'Plan limit reached', detail: /at most 1 container at once/ })
  t.equal((await liveContainers(app, user.account.id)).length, 1)

  const pro = await subscriber(app, stripe, 'pro')
  t.equal((await assign(app, pro.headers, { app: a.app })).statusCode, 202, 'Pro runs three: a start')
  t.equal((await assign(app, pro.headers, { app: b.app })).statusCode, 201)
})

t.test('assignContainer › insufficient permissions › plan limit holds when assignments of different apps race', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const offers = await Promise.all(Array.from({ length: 5 }, () => given(app).offer()))
  const user = await subscriber(app, stripe, 'starter')

  const answers = await Promise.all(offers.map((o) => assign(app, user.headers, { app: o.app })))

  t.same(answers.map((r) => r.statusCode).sort(), [202, 409, 409, 409, 409], 'one start; the others hit the limit')
  t.equal((await liveContainers(app, user.account.id)).length, 1, 'Starter never holds two containers')
})

t.test('assignContainer › insufficient permissions › a DPI above the plan\'s maxDpi is 403; up to it is fine', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const user = await subscriber(app, stripe, 'starter')

  const sharp = await assign(app, user.headers, { app: offer.app, dpi: 192 })
  t.equal(sharp.statusCode, 403)
  t.match(sharp.json(), { code: 'forbidden', title: 'Not in your plan', detail: 'Your plan streams at up to 144 DPI.' })
  t.same(await liveContainers(app, user.account.id), [])

  const fine = await assign(app, user.headers, { app: offer.app, dpi: 144 })
  t.equal(fine.statusCode, 201)
})

t.test('assignContainer › insufficient permissions › a region outside the plan\'s regions is 403; without a region, one of the plan\'s', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const g = given(app)
  const inside = await g.region({ sortOrder: 2 })
  const outside = await g.region({ sortOrder: 1 })
  const offered = await g.app({ regions: [inside.code, outside.code] })
  for (const r of [inside, outside]) await app.db.insertInto('cluster').values({ region_code: r.code, name: `fractal-${r.code}-1`, capacity: 10, capacity_provider: null }).execute()
  // A regional plan (the file's plans are worldwide).
  await app.db.updateTable('plan').set({ entitlements: JSON.stringify({ concurrentContainers: 2, hoursPerMonth: null, regions: [inside.code], maxDpi: 288 }) }).where('id', '=', 'starter').execute()
  const user = await subscriber(app, stripe, 'starter')

  const elsewhere = await assign(app, user.headers, { app: offered.id, region: outside.code })
  t.equal(elsewhere.statusCode, 403)
  t.match(elsewhere.json(), { code: 'forbidden', detail: `Your plan does not include region ${outside.code}.` })

  const picked = await assign(app, user.headers, { app: offered.id })
  t.equal(picked.statusCode, 202)
  t.equal(picked.json().container.region, inside.code, 'not the catalog\'s first region, the plan\'s')
})

t.test('assignContainer › insufficient permissions › an app listing plans (plan_app) is 403 on another plan and in the trial; its plans and unlisted apps stream', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const proOnly = await given(app).offer()
  const open = await given(app).offer()
  await given(app).warmContainer(proOnly)
  await given(app).warmContainer(open)
  await app.db.insertInto('plan_app').values({ plan_id: 'pro', app_id: proOnly.app }).execute()
  const starter = await subscriber(app, stripe, 'starter')
  const pro = await subscriber(app, stripe, 'pro')
  const trial = await given(app).signedIn()

  const refused = await assign(app, starter.headers, { app: proOnly.app })
  t.equal(refused.statusCode, 403)
  t.match(refused.headers['content-type'], /application\/problem\+json/)
  t.match(refused.json(), { code: 'forbidden', title: 'Not in your plan', detail: `${proOnly.app} is offered on the pro plan, and yours is not one of them. Change plans: POST /v1/billing/checkout-sessions.` })
  t.same(await liveContainers(app, starter.account.id), [], 'nothing handed out, the warm container is still there')
  t.equal((await assign(app, trial.headers, { app: proOnly.app })).statusCode, 403, 'the trial has the apps that list no plan')

  t.equal((await assign(app, starter.headers, { app: open.app })).statusCode, 201, 'an app listing no plan: every plan')
  t.equal((await assign(app, pro.headers, { app: proOnly.app })).statusCode, 201, 'a listed plan streams it (the warm one)')
})

t.test('assignContainer › valid › a subscription change by webhook is seen by the next assignment', async (t) => {
  const { app, stripe, price } = await billingApp(t)
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  const other = await given(app).offer()
  await given(app).warmContainer(offer)
  const user = await subscriber(app, stripe, 'starter')

  t.equal((await assign(app, user.headers, { app: offer.app, dpi: 288 })).statusCode, 403, 'Starter: 144 DPI at most (now cached)')

  const upgraded = stripe.putSubscription({ id: user.subscription.id, customer: user.customer, price: price('pro'), metadata: user.subscription.metadata })
  await deliverAndProcess(app, stripeEvent('customer.subscription.updated', upgraded))
  t.equal((await assign(app, user.headers, { app: offer.app, dpi: 288 })).statusCode, 201, 'Pro at once, not after the cache expires')

  await deliverAndProcess(app, stripeEvent('customer.subscription.deleted', { ...upgraded, status: 'canceled' }))
  const after = await assign(app, user.headers, { app: other.app })
  t.equal(after.statusCode, 402, 'cancelled: at once too')
})

t.test('assignContainer › valid › billing configured but not enforced (BILLING_ENFORCED=false): no plan check, nor the app\'s plan list', async (t) => {
  const { app } = await billingApp(t, { BILLING_ENFORCED: 'false' })
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  await app.db.insertInto('plan_app').values({ plan_id: 'pro', app_id: offer.app }).execute()
  const user = await given(app).signedIn()
  await trialOver(app, user.account.id)

  t.equal((await assign(app, user.headers, { app: offer.app, dpi: 480 })).statusCode, 201)
})

t.test('assignContainer › insufficient permissions › payment: a plan\'s monthly hours used up this period is 402; last period\'s hours do not count', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const user = await subscriber(app, stripe, 'starter')
  const { current_period_start: periodStart } = await app.db.selectFrom('subscription').select('current_period_start').where('user_id', '=', user.account.id).executeTakeFirstOrThrow()
  t.ok(periodStart, 'the webhook stored the current period')
  const used = (hours: number, endedAt: Date) => app.db.insertInto('usage_record')
    .values({ container_id: randomUUID(), user_id: user.account.id, seconds: hours * 3600, ended_at: endedAt }).execute()
  // Starter allows 40 hours a month: 45 of them before this period, 39 in it.
  await used(45, new Date(periodStart!.getTime() - 86_400_000))
  await used(39, new Date(periodStart!.getTime() + 1000))
  t.equal((await assign(app, user.headers, { app: offer.app })).statusCode, 201, '39 of 40 hours used: streams')

  await used(1, new Date(periodStart!.getTime() + 2000))
  const other = await given(app).offer()
  const res = await assign(app, user.headers, { app: other.app })
  t.equal(res.statusCode, 402)
  t.match(res.json(), { code: 'payment_required', detail: /40 hours this period are used up.*checkout-sessions/ })
  t.equal((await liveContainers(app, user.account.id)).length, 1, 'nothing more handed out')
})

t.test('assignContainer › valid › a regional plan and a client location: the nearest region the plan allows, not the nearest', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const g = given(app)
  const dublin = await g.region()
  const virginia = await g.region()
  await app.db.updateTable('region').set({ latitude: 53.3, longitude: -6.3 }).where('code', '=', dublin.code).execute()
  await app.db.updateTable('region').set({ latitude: 38.9, longitude: -77.4 }).where('code', '=', virginia.code).execute()
  const offered = await g.app({ regions: [dublin.code, virginia.code] })
  for (const r of [dublin, virginia]) await app.db.insertInto('cluster').values({ region_code: r.code, name: `fractal-${r.code}-1`, capacity: 10, capacity_provider: null }).execute()
  await app.db.updateTable('plan').set({ entitlements: JSON.stringify({ concurrentContainers: 2, hoursPerMonth: null, regions: [virginia.code], maxDpi: 288 }) }).where('id', '=', 'starter').execute()
  const regional = await subscriber(app, stripe, 'starter')
  const worldwide = await subscriber(app, stripe, 'pro')
  const london = { 'cloudfront-viewer-latitude': '51.5', 'cloudfront-viewer-longitude': '-0.1' }

  const near = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offered.id }, headers: { ...worldwide.headers, ...london, 'idempotency-key': randomUUID() } })
  t.equal(near.json().container.region, dublin.code, 'a worldwide plan: the nearest')
  const allowed = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offered.id }, headers: { ...regional.headers, ...london, 'idempotency-key': randomUUID() } })
  t.equal(allowed.statusCode, 202)
  t.equal(allowed.json().container.region, virginia.code, 'the plan\'s region, though further')
})
