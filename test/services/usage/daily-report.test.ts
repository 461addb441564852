import t from 'tap'
import { build } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { given } from '../../helpers/given.js'
import { s3rverCredentials, startS3 } from '../../helpers/s3.js'
import { usageOf } from '../../routes/usage/usage-fixtures.js'

// The SDK reads its credentials from the environment; s3rver accepts (and checks signatures made with) these.
process.env.AWS_ACCESS_KEY_ID = s3rverCredentials.accessKeyId
process.env.AWS_SECRET_ACCESS_KEY = s3rverCredentials.secretAccessKey

const day = 86_400_000
const dateOf = (ms: number) => new Date(ms).toISOString().slice(0, 10)

t.test('usage-daily-report › writes the previous UTC day\'s usage to the log bucket under usage/, once per day', async (t) => {
  const s3 = await startS3(t)
  const clock = new TestClock()
  const app = await build(t, s3.env, { clock })
  const offer = await given(app).offer()
  const user = await given(app).user()
  const today = Math.floor(clock.now() / day) * day
  const yesterday = dateOf(today - day)
  const u = usageOf(app)
  await u.record({ userId: user.id, app: offer.app, region: offer.region, seconds: 3600, endedAt: new Date(today - day).toISOString() })
  await u.record({ userId: user.id, app: offer.app, region: offer.region, seconds: 1800, endedAt: new Date(today - 1).toISOString() })
  await u.record({ userId: user.id, app: offer.app, region: offer.region, seconds: 60, endedAt: new Date(today).toISOString() }) // today: not yet

  t.same(await app.schedules.runOnce('usage-daily-report'), { written: 1 })
  t.same(await app.schedules.runOnce('usage-daily-report'), { written: 0 }, 'a second pass writes nothing')

  t.same(await s3.keys('usage/'), [`usage/daily/${yesterday}.csv`], 'one object for the day')
  const body = (await s3.get(`usage/daily/${yesterday}.csv`))!.toString('utf8')
  t.equal(body, 'date,userId,email,app,region,plan,containers,seconds,hours\r\n' +
    `${yesterday},${user.id},${user.email},${offer.app},${offer.region},,2,5400,1.5\r\n`)

  // The next day, the next file (today's record in it); the first one is left as it was.
  clock.advance(day)
  t.same(await app.schedules.runOnce('usage-daily-report'), { written: 1 })
  const next = dateOf(today)
  t.same(await s3.keys('usage/'), [`usage/daily/${yesterday}.csv`, `usage/daily/${next}.csv`])
  t.match((await s3.get(`usage/daily/${next}.csv`))!.toString('utf8'), `${next},${user.id},${user.email},${offer.app},${offer.region},,1,60,0.02`)
  t.equal((await s3.get(`usage/daily/${yesterday}.csv`))!.toString('utf8'), body)
})

t.test('usage-daily-report › a day with no usage still gets its file (the header row), so the day reads as done', async (t) => {
  const s3 = await startS3(t)
  const app = await build(t, s3.env)
  t.same(await app.schedules.runOnce('usage-daily-report'), { written: 1 })
  const [key] = await s3.keys('usage/')
  t.equal((await s3.get(key!))!.toString('utf8'), 'date,userId,email,app,region,plan,containers,seconds,hours\r\n')
})

t.test('usage-daily-report › the plan is the one the user was on when the time was recorded', async (t) => {
  const app = await build(t)
  const user = await given(app).user()
  await app.db.insertInto('plan').values({ id: 'daily-pro', name: 'Pro', amount: 1, currency: 'usd', interval: 'month', entitlements: JSON.stringify({ concurrentContainers: 1, hoursPerMonth: null, regions: null, maxDpi: 480 }) }).execute()
  await app.db.insertInto('subscription').values({ user_id: user.id, stripe_subscription_id: `sub_${user.id}`, plan_id: 'daily-pro', status: 'active' }).execute()
  const offer = await given(app).offer()
  const id = await usageOf(app).record({ userId: user.id, app: offer.app, region: offer.region, seconds: 60, endedAt: new Date().toISOString() })
  await app.db.updateTable('subscription').set({ plan_id: null }).where('user_id', '=', user.id).execute()
  const row = await app.db.selectFrom('usage_record').select('plan_id').where('container_id', '=', id).executeTakeFirstOrThrow()
  t.equal(row.plan_id, 'daily-pro', 'kept on the record by the trigger')
})
