import t from 'tap'
import { readPlansFile, type PlanDefinition } from '../../../db/plans.js'
import { seedCatalog } from '../../../db/seed.js'
import { meterEventName, syncPlansWithStripe } from '../../../services/billing/billing.service.js'
import { createStripeClient } from '../../../services/billing/billing.stripe.js'
import { build } from '../../helpers/build.js'
import { billingApp } from '../../helpers/stripe-stand-in.js'

t.test('listPlans › valid › the three plans of db/plans.json with price, interval, trial and entitlements, in order', async (t) => {
  const app = await build(t)
  await seedCatalog(app.db)

  const res = await app.inject({ method: 'GET', url: '/v1/plans' })

  t.equal(res.statusCode, 200)
  t.same(res.json(), {
    items: [
      { id: 'starter', name: 'Starter', price: 900, interval: 'month', currency: 'usd', trialDays: 7, billedByHour: false, entitlements: { concurrentContainers: 1, hoursPerMonth: 40, regions: null, maxDpi: 144 }, sessionLimits: { maxSessionSeconds: 14400, disconnectTimeoutSeconds: 600, idleTimeoutSeconds: 1800, maxExtensionSeconds: 0 } },
      { id: 'pro', name: 'Pro', price: 2900, interval: 'month', currency: 'usd', trialDays: 7, billedByHour: false, entitlements: { concurrentContainers: 3, hoursPerMonth: null, regions: null, maxDpi: 288 }, sessionLimits: { maxSessionSeconds: 43200, disconnectTimeoutSeconds: 1800, idleTimeoutSeconds: 3600, maxExtensionSeconds: 14400 } },
      { id: 'pay-as-you-go', name: 'Pay as you go', price: 50, interval: 'month', currency: 'usd', trialDays: 0, billedByHour: true, entitlements: { concurrentContainers: 2, hoursPerMonth: null, regions: null, maxDpi: 288 }, sessionLimits: { maxSessionSeconds: 28800, disconnectTimeoutSeconds: 900, idleTimeoutSeconds: 1800, maxExtensionSeconds: 7200 } }
    ]
  })
  t.notMatch(res.body, /price_|prod_|fractal_/, 'no Stripe ids in the public listing')
})

t.test('listPlans › valid › public and edge-cacheable: Cache-Control, a strong ETag and 304 to If-None-Match', async (t) => {
  const app = await build(t)
  await seedCatalog(app.db)

  const first = await app.inject({ method: 'GET', url: '/v1/plans' })
  t.equal(first.statusCode, 200)
  t.match(first.headers['cache-control'], /public/)
  t.match(first.headers['cache-control'], /max-age=60/)
  t.match(first.headers.etag, /^"[^"]+"$/, 'a strong ETag')

  const again = await app.inject({ method: 'GET', url: '/v1/plans', headers: { 'if-none-match': first.headers.etag as string } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')
  t.equal(again.headers.etag, first.headers.etag)

  const stale = await app.inject({ method: 'GET', url: '/v1/plans', headers: { 'if-none-match': '"something-else"' } })
  t.equal(stale.statusCode, 200)
})

t.test('listPlans › valid › a plan removed from the file is no longer listed; no plans at all is an empty list', async (t) => {
  const app = await build(t)
  t.same((await app.inject({ method: 'GET', url: '/v1/plans' })).json(), { items: [] })
  await seedCatalog(app.db)
  const { upsertPlans } = await import('../../../db/plans.js')
  const plans = await readPlansFile()
  await upsertPlans(app.db, plans.filter((p) => p.id !== 'pro'))
  const res = await app.inject({ method: 'GET', url: '/v1/plans' })
  t.same(res.json().items.map((p: { id: string }) => p.id), ['starter', 'pay-as-you-go'])
})

t.test('listPlans › valid › npm run stripe:sync creates each product, price and the hours meter once and maps plans to prices', async (t) => {
  const { app, stripe } = await billingApp(t, {}, { sync: false })
  const plans = await readPlansFile()

  const ids = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)

  t.same([...stripe.products.keys()].sort(), ['fractal_pay_as_you_go', 'fractal_pro', 'fractal_starter'], 'product ids are fixed per plan')
  t.equal(stripe.prices.size, 3)
  t.equal(stripe.meters.size, 1, 'one meter, for the hourly plan')
  const meter = [...stripe.meters.values()][0]!
  t.match(meter, { event_name: meterEventName, status: 'active', default_aggregation: { formula: 'sum' }, customer_mapping: { type: 'by_id', event_payload_key: 'stripe_customer_id' }, value_settings: { event_payload_key: 'hours' } })

  const starter = stripe.prices.get(ids.get('starter')!.price)!
  t.match(starter, { product: 'fractal_starter', currency: 'usd', unit_amount: 900, recurring: { interval: 'month', usage_type: 'licensed', meter: null }, active: true })
  t.ok(starter.lookup_key, 'the price has a lookup key')
  const hourly = stripe.prices.get(ids.get('pay-as-you-go')!.price)!
  t.match(hourly, { product: 'fractal_pay_as_you_go', unit_amount: 50, recurring: { interval: 'month', usage_type: 'metered', meter: meter.id } })
  const priceCreates = stripe.calls('POST', '/v1/prices')
  t.ok(priceCreates.every((r) => r.body.transfer_lookup_key === 'true'), 'a new price takes the lookup key over')

  const rows = await app.db.selectFrom('plan').select(['id', 'stripe_product_id', 'stripe_price_id', 'active']).orderBy('sort_order').execute()
  t.same(rows, [
    { id: 'starter', stripe_product_id: 'fractal_starter', stripe_price_id: ids.get('starter')!.price, active: true },
    { id: 'pro', stripe_product_id: 'fractal_pro', stripe_price_id: ids.get('pro')!.price, active: true },
    { id: 'pay-as-you-go', stripe_product_id: 'fractal_pay_as_you_go', stripe_price_id: ids.get('pay-as-you-go')!.price, active: true }
  ])
  const listed = await app.inject({ method: 'GET', url: '/v1/plans' })
  t.equal(listed.json().items.length, 3, 'the synced plans are listed')
})

t.test('listPlans › valid › npm run stripe:sync a second time creates nothing new and keeps the mapping', async (t) => {
  const { app, stripe } = await billingApp(t, {}, { sync: false })
  const plans = await readPlansFile()
  const first = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)
  stripe.clearRequests()

  const second = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)

  t.same(second, first)
  t.equal(stripe.calls('POST', '/v1/products').length, 0, 'no product created')
  t.equal(stripe.calls('POST', '/v1/prices').length, 0, 'no price created')
  t.equal(stripe.calls('POST', '/v1/billing/meters').length, 0, 'no meter created')
  t.equal(stripe.calls('POST', /^\/v1\/products\/fractal_/).length, 3, 'each product is updated in place (name, active)')
  t.equal(stripe.products.size, 3)
  t.equal(stripe.prices.size, 3)
  t.equal(stripe.meters.size, 1)
})

t.test('listPlans › valid › npm run stripe:sync after a price change: a new price holding the plan\'s lookup key, the plan maps to it', async (t) => {
  const { app, stripe } = await billingApp(t, {}, { sync: false })
  const plans = await readPlansFile()
  const before = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)
  const oldPrice = before.get('pro')!.price
  stripe.clearRequests()

  const changed: PlanDefinition[] = plans.map((p) => (p.id === 'pro' ? { ...p, amount: 3900, name: 'Pro+' } : p))
  const after = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, changed)

  const creates = stripe.calls('POST', '/v1/prices')
  t.equal(creates.length, 1, 'one new price, for the plan that changed')
  t.match(creates[0]!.body, { product: 'fractal_pro', unit_amount: '3900', currency: 'usd', 'recurring[interval]': 'month', transfer_lookup_key: 'true' })
  const newPrice = after.get('pro')!.price
  t.not(newPrice, oldPrice)
  t.equal(stripe.prices.get(newPrice)!.unit_amount, 3900)
  // The lookup key the sync looks the plan up by now finds the new price.
  const lookedUp = stripe.calls('GET', '/v1/prices').map((r) => r.query['lookup_keys[0]']!)
  const proKey = lookedUp.find((k) => k.includes('pro'))!
  t.equal(stripe.prices.get(newPrice)!.lookup_key, proKey, 'the new price holds the key the plan is looked up by')
  t.equal(stripe.products.get('fractal_pro')!.name, 'Pro+', 'the product is renamed')
  t.equal(after.get('starter')!.price, before.get('starter')!.price, 'other plans keep their price')

  const row = await app.db.selectFrom('plan').select(['amount', 'name', 'stripe_price_id']).where('id', '=', 'pro').executeTakeFirstOrThrow()
  t.same(row, { amount: 3900, name: 'Pro+', stripe_price_id: newPrice })
  const listed = await app.inject({ method: 'GET', url: '/v1/plans' })
  t.match(listed.json().items, [{ id: 'starter' }, { id: 'pro', price: 3900, name: 'Pro+' }, { id: 'pay-as-you-go' }])

  stripe.clearRequests()
  await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, changed)
  t.equal(stripe.calls('POST', '/v1/prices').length, 0, 'a rerun finds the new price by its key')
})

t.test('listPlans › faults › npm run stripe:sync with Stripe failing leaves the plans unmapped and can be run again', async (t) => {
  const { app, stripe } = await billingApp(t, {}, { sync: false })
  const plans = await readPlansFile()
  const stop = stripe.fail({ method: 'POST', path: '/v1/prices' }, { status: 400, error: { type: 'invalid_request_error', message: 'Refused.' } })

  await t.rejects(syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans))
  t.same(await app.db.selectFrom('plan').select('id').execute(), [], 'no plan mapped to a price that does not exist')

  stop()
  const ids = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)
  t.equal(ids.size, 3)
  t.equal(stripe.products.size, 3, 'the products made by the failed run are reused')
})
