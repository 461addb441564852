import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>

const bootstrapSecret = 'a-long-shared-bootstrap-secret'

/** A host that shook hands through the API; `secret` is its X-Host-Secret. */
async function givenHost (app: App, region: string) {
  const res = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: { instanceId: `i-${randomBytes(8).toString('hex')}`, region, bootstrapSecret } })
  if (res.statusCode !== 201) throw new Error(`handshake: ${res.statusCode} ${res.body}`)
  return res.json() as { hostId: string, secret: string }
}
const fleet = (app: App, headers: Record<string, string>) => app.inject({ method: 'GET', url: '/v1/admin/fleet', headers })

t.test('getFleet › valid › per region in catalog order: clusters with live containers, hosts by status, containers by state, warm pools', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const g = given(app)
  const offer = await g.offer()
  const quiet = await g.region({ enabled: false })
  // Catalog order: the quiet region first.
  await app.db.updateTable('region').set({ sort_order: 2 }).where('code', '=', offer.region).execute()
  await app.db.updateTable('region').set({ sort_order: 1 }).where('code', '=', quiet.code).execute()
  const main = await app.db.selectFrom('cluster').selectAll().where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  const spare = await app.db.insertInto('cluster').values({ region_code: offer.region, name: `fractal-${offer.region}-2`, capacity: 5, capacity_provider: null }).returningAll().executeTakeFirstOrThrow()
  await app.db.updateTable('app_region').set({ warm_pool_target: 3 }).where('app_id', '=', offer.app).where('region_code', '=', offer.region).execute()

  // Containers: one handed to a user (in use), two ready, one starting for the pool, one failed today,
  // one stopped two days ago (too old to count) — all on the main cluster.
  const held = await g.warmContainer(offer)
  const user = await g.signedIn()
  const assigned = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app, region: offer.region }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(assigned.statusCode, 201)
  t.equal(assigned.json().id, held.id)
  const ready = [await g.warmContainer(offer), await g.warmContainer(offer)]
  const starting = await g.warmContainer(offer)
  const failed = await g.warmContainer(offer)
  const stopped = await g.warmContainer(offer)
  await app.db.updateTable('container').set({ state: 'starting' }).where('id', '=', starting.id).execute()
  await app.db.updateTable('container').set({ state: 'failed', failure_reason: 'test' }).where('id', '=', failed.id).execute()
  await app.db.updateTable('container').set({ state: 'stopped', updated_at: new Date(Date.now() - 2 * 86_400_000) }).where('id', '=', stopped.id).execute()
  await app.db.updateTable('container').set({ cluster_id: main.id })
    .where('id', 'in', [held.id, ...ready.map((c) => c.id), starting.id, failed.id, stopped.id]).execute()

  // Hosts: two active, one draining, one dead.
  await givenHost(app, offer.region)
  await givenHost(app, offer.region)
  const draining = await givenHost(app, offer.region)
  const dead = await givenHost(app, offer.region)
  await app.inject({ method: 'POST', url: `/v1/hosts/${draining.hostId}/heartbeats`, payload: { dying: true }, headers: { 'x-host-secret': draining.secret } })
  await app.db.updateTable('host').set({ status: 'dead' }).where('id', '=', dead.hostId).execute()
  const dev = await g.signedIn({ role: 'developer' })

  const res = await fleet(app, dev.headers)

  t.equal(res.statusCode, 200)
  const regions = res.json().regions as Array<{ region: string }>
  const codes = regions.map((r) => r.region)
  t.ok(codes.indexOf(quiet.code) >= 0 && codes.indexOf(quiet.code) < codes.indexOf(offer.region), 'catalog order')
  t.same(regions.find((r) => r.region === offer.region), {
    region: offer.region,
    enabled: true,
    clusters: [
      { id: main.id, name: main.name, status: main.status, capacity: 10, liveContainers: 4 },
      { id: spare.id, name: spare.name, status: 'active', capacity: 5, liveContainers: 0 }
    ],
    hosts: { active: 2, draining: 1, dead: 1 },
    containers: { in_use: 1, available: 2, starting: 1, failed: 1 },
    warmPools: [{ app: offer.app, region: offer.region, target: 3, ready: 2, starting: 1 }],
    decisions: []
  })
  t.same(regions.find((r) => r.region === quiet.code), {
    region: quiet.code,
    enabled: false,
    clusters: [],
    hosts: { active: 0, draining: 0, dead: 0 },
    containers: {},
    warmPools: [],
    decisions: []
  }, 'an empty region has zeros, not gaps')
})

t.test('getFleet › valid › the fleet follows the hosts: a dying heartbeat and the reaper move the counts', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_DEAD_AFTER_MS: '1000' })
  const region = await given(app).region()
  const dying = await givenHost(app, region.code)
  const silent = await givenHost(app, region.code)
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))
  const hostsOf = async () => (await fleet(app, reader)).json().regions.find((r: { region: string }) => r.region === region.code).hosts

  t.same(await hostsOf(), { active: 2, draining: 0, dead: 0 })
  await app.inject({ method: 'POST', url: `/v1/hosts/${dying.hostId}/heartbeats`, payload: { IsDyingHeartbeat: true }, headers: { 'x-host-secret': dying.secret } })
  await app.db.updateTable('host').set({ last_heartbeat_at: new Date(Date.now() - 60_000) }).where('id', '=', silent.hostId).execute()
  await app.schedules.runOnce('reap-hosts')
  t.same(await hostsOf(), { active: 0, draining: 1, dead: 1 })
})

t.test('getFleet › insufficient permissions › a user (no fleet:read) is 403; no token or a bad one is 401', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()

  const asUser = await fleet(app, user.headers)
  t.equal(asUser.statusCode, 403)
  t.match(asUser.headers['content-type'], /application\/problem\+json/)
  t.equal(asUser.json().code, 'forbidden')
  t.notMatch(asUser.body, /regions/)

  t.equal((await fleet(app, bearer(await given(app).token({ role: 'developer', scopes: ['fleet:write'] })))).statusCode, 403, 'fleet:write alone does not read')

  const bad: Array<Record<string, string>> = [{}, { authorization: 'Bearer not-a-token' }, { authorization: 'Basic YWRtaW46YWRtaW4=' }]
  for (const headers of bad) {
    const res = await fleet(app, headers)
    t.equal(res.statusCode, 401)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.equal(res.json().code, 'unauthorized')
  }
})
