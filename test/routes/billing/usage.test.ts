// The report-usage schedule: container hours of plans billed by the hour go to Stripe's meter.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { meterEventName } from '../../../services/billing/billing.service.js'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { billingApp, subscribe, type StripeStandIn } from '../../helpers/stripe-stand-in.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const usageRows = (app: App) => app.db.selectFrom('usage_record').selectAll().orderBy('ended_at').execute()

/** A user (on `plan`, or on the trial) who held a container for `minutes` and stopped it through the API. */
async function stoppedContainer (app: App, stripe: StripeStandIn, plan: string | null, minutes: number) {
  const user = await given(app).signedIn()
  const subscribed = plan ? await subscribe(app, stripe, user.headers, plan, { status: 'active' }) : null
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const assigned = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  if (assigned.statusCode !== 201) throw new Error(`assign answered ${assigned.statusCode}: ${assigned.body}`)
  const containerId = assigned.json().id as string
  await app.db.updateTable('container').set({ assigned_at: new Date(Date.now() - minutes * 60_000) }).where('id', '=', containerId).execute()
  const stop = await app.inject({ method: 'DELETE', url: `/v1/containers/${containerId}`, headers: user.headers })
  if (stop.statusCode !== 202) throw new Error(`stop answered ${stop.statusCode}: ${stop.body}`)
  const recorded = await until(async () => (await app.db.selectFrom('usage_record').select('container_id').where('container_id', '=', containerId).executeTakeFirst()) !== undefined)
  if (!recorded) throw new Error('the stop recorded no usage')
  return { user, containerId, customer: subscribed?.customer ?? null }
}

t.test('stopContainer › valid › report-usage sends a pay-as-you-go user\'s hours to Stripe\'s meter, once; other users\' rows are only marked reported', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const hourly = await stoppedContainer(app, stripe, 'pay-as-you-go', 90)
  const monthly = await stoppedContainer(app, stripe, 'pro', 30)
  const trial = await stoppedContainer(app, stripe, null, 10)
  const rows = await usageRows(app)
  t.equal(rows.length, 3)
  const hourlyRow = rows.find((r) => r.container_id === hourly.containerId)!
  t.ok(Math.abs(hourlyRow.seconds - 5400) <= 5, `about 90 minutes recorded (${hourlyRow.seconds} s)`)
  stripe.clearRequests()

  const result = await app.schedules.runOnce('report-usage')

  t.same(result, { reported: 1, settled: 3 })
  const [sent, ...more] = stripe.calls('POST', '/v1/billing/meter_events')
  t.equal(more.length, 0, 'one meter event: the hourly plan only')
  t.same(sent!.body, {
    event_name: meterEventName,
    identifier: hourly.containerId,
    timestamp: String(Math.floor(hourlyRow.ended_at.getTime() / 1000)),
    'payload[stripe_customer_id]': hourly.customer!,
    'payload[hours]': (Math.ceil((hourlyRow.seconds / 3600) * 100) / 100).toFixed(2)
  })
  t.match(sent!.body['payload[hours]'], /^1\.5\d$/, 'hours, two decimals')
  t.equal(stripe.meterEvents.length, 1)
  t.ok((await usageRows(app)).every((r) => r.reported_at instanceof Date), 'every row is settled')
  t.ok(monthly.customer, 'the Pro user has a Stripe customer too: the plan decides, not the customer')
  t.equal(trial.customer, null)

  stripe.clearRequests()
  t.same(await app.schedules.runOnce('report-usage'), { reported: 0, settled: 0 }, 'a second pass has nothing to do')
  t.same(stripe.requests, [])
})

t.test('stopContainer › faults › report-usage with Stripe failing leaves the hours unreported; the next pass reports them once', async (t) => {
  const { app, stripe } = await billingApp(t)
  app.queue.startWorker(2)
  const hourly = await stoppedContainer(app, stripe, 'pay-as-you-go', 60)
  const stop = stripe.fail({ method: 'POST', path: '/v1/billing/meter_events' })

  await t.rejects(app.schedules.runOnce('report-usage'))
  t.equal((await usageRows(app))[0]!.reported_at, null, 'not marked reported')
  t.equal(stripe.meterEvents.length, 0)

  stop()
  t.same(await app.schedules.runOnce('report-usage'), { reported: 1, settled: 1 })
  t.same(stripe.meterEvents.map((e) => e.identifier), [hourly.containerId])
})
