import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

/** A region with an app whose warm pool wants `target` containers, and one cluster of `capacity`. */
async function regionNeeding (app: App, target: number, capacity: number, ami: string | null = 'ami-0123456789abcdef0') {
  const offer = await given(app).offer()
  await app.db.updateTable('region').set({ current_ami: ami }).where('code', '=', offer.region).execute()
  await app.db.updateTable('cluster').set({ capacity }).where('region_code', '=', offer.region).execute()
  await app.db.updateTable('app_region').set({ warm_pool_target: target }).where('app_id', '=', offer.app).execute()
  return offer
}

const decisionsOf = async (app: App, region: string) => {
  const admin = await given(app).signedIn({ role: 'developer' })
  const fleet = await app.inject({ method: 'GET', url: '/v1/admin/fleet', headers: admin.headers })
  return fleet.json().regions.find((r: { region: string }) => r.region === region)
}

t.test('fleet-scaling › valid › a region short of room gets a new cluster, once, and the fleet view says why', async (t) => {
  const app = await build(t, { FLEET_CLUSTER_MAX_SIZE: '5', CONTAINERS_PER_HOST: '4' })
  const offer = await regionNeeding(app, 12, 10)
  // Keep the other test regions of this database out of the way: only ours is enabled.
  await app.db.updateTable('region').set({ enabled: false }).where('code', '!=', offer.region).execute()

  t.match(await app.schedules.runOnce('fleet-scaling'), { created: 1 })
  const clusters = await app.db.selectFrom('cluster').selectAll().where('region_code', '=', offer.region).orderBy('created_at').execute()
  t.equal(clusters.length, 2)
  t.match(clusters[1], { status: 'creating', min_size: 0, max_size: 5, capacity: 20, ami: 'ami-0123456789abcdef0', instance_type: 'g4dn.xlarge' })
  t.match(await app.schedules.runOnce('fleet-scaling'), { created: 0 }, 'a cluster on its way counts: no second one')

  app.queue.startWorker(2)
  t.ok(await until(async () => (await app.db.selectFrom('cluster').select('status').where('id', '=', clusters[1]!.id).executeTakeFirstOrThrow()).status === 'active'))
  const view = await decisionsOf(app, offer.region)
  t.match(view.decisions, [{ action: 'create_cluster', clusterId: clusters[1]!.id, reason: /needs room for 12 containers \(0 live, 12 warm missing\), has 10/ }])
})

t.test('fleet-scaling › valid › without an AMI the region cannot grow: the decision says so', async (t) => {
  const app = await build(t)
  const offer = await regionNeeding(app, 3, 1, null)
  await app.db.updateTable('region').set({ enabled: false }).where('code', '!=', offer.region).execute()
  t.match(await app.schedules.runOnce('fleet-scaling'), { created: 0 })
  const view = await decisionsOf(app, offer.region)
  t.match(view.decisions, [{ action: 'cannot_create', reason: /no current AMI/ }])
})

t.test('fleet-scaling › valid › an empty extra cluster past its grace goes; a busy or needed one stays; maintenance is left alone', async (t) => {
  const app = await build(t, { FLEET_EMPTY_CLUSTER_GRACE_MS: '0' })
  const offer = await regionNeeding(app, 0, 10)
  await app.db.updateTable('region').set({ enabled: false }).where('code', '!=', offer.region).execute()
  const extra = await app.db.insertInto('cluster').values({ region_code: offer.region, name: `fractal-${offer.region}-extra`, capacity: 10, status: 'active' }).returningAll().executeTakeFirstOrThrow()
  await given(app).assignedContainer().then(async ({ container }) => {
    // A busy container in the first cluster keeps that one.
    const first = await app.db.selectFrom('cluster').select('id').where('region_code', '=', offer.region).where('id', '!=', extra.id).executeTakeFirstOrThrow()
    await app.db.updateTable('container').set({ cluster_id: first.id, region_code: offer.region, app_id: offer.app }).where('id', '=', container.id).execute()
  })

  await app.db.insertInto('maintenance').values({ scope: offer.region, message: 'upgrade', ends_at: new Date(Date.now() + 600_000) }).execute()
  t.match(await app.schedules.runOnce('fleet-scaling'), { deleted: 0 }, 'in maintenance: nothing moves')
  await app.db.deleteFrom('maintenance').execute()

  t.match(await app.schedules.runOnce('fleet-scaling'), { deleted: 1 })
  const after = await app.db.selectFrom('cluster').select(['id', 'status']).where('region_code', '=', offer.region).execute()
  t.match(after.find((c) => c.id === extra.id), { status: 'deleting' })
  t.equal(after.filter((c) => c.status === 'active').length, 1, 'the busy cluster stays')
  t.match(await app.schedules.runOnce('fleet-scaling'), { deleted: 0 }, 'the last cluster is never removed')
  const view = await decisionsOf(app, offer.region)
  t.match(view.decisions, [{ action: 'delete_cluster', clusterId: extra.id, reason: /empty/ }])
})
