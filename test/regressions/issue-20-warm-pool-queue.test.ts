// Issue 20: on a fresh `npm start` the first user's container waited 17 s behind the 96 warm-pool starts the
// worker launched at boot: refills and user starts shared one queue. Refills now run on a queue of their own
// (warm-pools), and the embedded catalog seeds small pools.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { seedCatalog } from '../../db/seed.js'
import { loadConfig } from '../../plugins/config.js'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

t.test('assignContainer › valid › a user\'s start does not wait behind a backlog of warm-pool refills', async (t) => {
  const app = await build(t, { SIMULATED_START_MS: '200', WARM_POOL_MAX_STARTS: '40', WARM_POOL_INTERVAL_MS: '600000' })
  const pooled = await given(app).offer()
  await app.db.updateTable('app_region').set({ warm_pool_target: 40 }).where('app_id', '=', pooled.app).execute()
  await app.db.updateTable('cluster').set({ capacity: 100 }).where('region_code', '=', pooled.region).execute()
  t.match(await app.schedules.runOnce('warm-pools'), { started: 40 })
  t.match(await app.queue.counts('warm-pools'), { waiting: 40 }, 'the refills wait on their own queue')

  const user = await given(app).signedIn()
  const wanted = await given(app).offer()
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: wanted.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(res.statusCode, 202)
  t.match(await app.queue.counts('containers'), { waiting: 1 }, 'the user\'s start is on the containers queue')

  // One worker slot per queue: with one shared queue the user's start would come 41st.
  app.queue.startWorker(1)
  const job = res.json().job.id as string
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job}`, headers: user.headers })).json().state === 'succeeded', 30_000), 'the user\'s start succeeds')
  const backlog = await app.queue.counts('warm-pools')
  t.ok(backlog.waiting + backlog.delayed >= 30, `most refills still wait (${backlog.waiting} waiting, ${backlog.delayed} delayed)`)
})

t.test('seed › the embedded catalog seeds small warm pools with the simulated cloud, the listed ones otherwise', async (t) => {
  t.equal(loadConfig({}).db.seedWarmPools, 'small')
  t.equal(loadConfig({ ...awsSettings, CLOUD_PROVIDER: 'aws' }).db.seedWarmPools, 'full')
  t.equal(loadConfig({ DATABASE_SEED_WARM_POOLS: 'full' }).db.seedWarmPools, 'full')

  const small = await build(t)
  await seedCatalog(small.db, { warmPools: 'small' })
  const pools = await small.db.selectFrom('app_region').select(['app_id', 'region_code', 'warm_pool_target']).where('warm_pool_target', '>', 0).execute()
  t.same([...new Set(pools.map((p) => p.region_code))], ['us-east-1'], 'one region')
  t.ok(pools.every((p) => p.warm_pool_target === 1) && pools.length === 7, `one container per app (${pools.length})`)

  const full = await build(t)
  await seedCatalog(full.db)
  const total = await full.db.selectFrom('app_region').innerJoin('region', 'region.code', 'app_region.region_code').where('region.enabled', '=', true)
    .select((eb) => eb.fn.sum<number>('warm_pool_target').as('n')).executeTakeFirstOrThrow()
  t.equal(Number(total.n), 96, 'as db/seed-data.ts lists them: 96 starts in the enabled regions')
})
