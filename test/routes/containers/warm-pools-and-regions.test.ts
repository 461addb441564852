import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const assign = (app: App, headers: Record<string, string>, body: object, extra: Record<string, string> = {}, remoteAddress?: string) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': randomUUID(), ...extra }, ...(remoteAddress ? { remoteAddress } : {}) })

/** One app offered in three regions far apart: Virginia, Ireland, Tokyo (catalog order: Tokyo first). */
async function threeRegions (app: App) {
  const g = given(app)
  const places = [{ lat: 35.7, lon: 139.7 }, { lat: 38.9, lon: -77.4 }, { lat: 53.3, lon: -6.3 }]
  const regions = []
  for (const [i, p] of places.entries()) {
    const r = await g.region({ sortOrder: i })
    await app.db.updateTable('region').set({ latitude: p.lat, longitude: p.lon }).where('code', '=', r.code).execute()
    await app.db.insertInto('cluster').values({ region_code: r.code, name: `fractal-${r.code}-1`, capacity: 10, capacity_provider: null }).execute()
    regions.push(r.code)
  }
  const offered = await g.app({ regions })
  const [tokyo, virginia, ireland] = regions as [string, string, string]
  return { app: offered.id, tokyo, virginia, ireland }
}

t.test('assignContainer › valid › no region: the nearest from CloudFront\'s or Cloudflare\'s geo headers', async (t) => {
  const app = await fileApp()
  const world = await threeRegions(app)
  const dublinUser = await given(app).signedIn()
  const bostonUser = await given(app).signedIn()
  const lostUser = await given(app).signedIn()

  const fromDublin = await assign(app, dublinUser.headers, { app: world.app }, { 'cloudfront-viewer-latitude': '53.35', 'cloudfront-viewer-longitude': '-6.26' })
  const fromBoston = await assign(app, bostonUser.headers, { app: world.app }, { 'cf-iplatitude': '42.36', 'cf-iplongitude': '-71.06' })
  const garbage = await assign(app, lostUser.headers, { app: world.app }, { 'cloudfront-viewer-latitude': 'north', 'cloudfront-viewer-longitude': '999' })

  t.equal(fromDublin.statusCode, 202)
  t.equal(fromDublin.json().container.region, world.ireland)
  t.equal(fromBoston.json().container.region, world.virginia)
  t.equal(garbage.statusCode, 202, 'malformed geo headers are ignored, not an error')
  t.equal(garbage.json().container.region, world.tokyo, 'no usable location: the catalog order')
})

t.test('assignContainer › valid › no region: a warm container within 1,000 km of the nearest wins; a region in maintenance is skipped', async (t) => {
  const app = await fileApp()
  const world = await threeRegions(app)
  // London-ish client: Ireland is nearest; no warm container anywhere near except Virginia (too far).
  await given(app).warmContainer({ app: world.app, region: world.virginia })
  const first = await given(app).signedIn()
  const london = { 'cloudfront-viewer-latitude': '51.5', 'cloudfront-viewer-longitude': '-0.1' }
  const res = await assign(app, first.headers, { app: world.app }, london)
  t.equal(res.statusCode, 202, 'Virginia is 5,000 km further: the nearest region starts one')
  t.equal(res.json().container.region, world.ireland)

  // A client in Boston: Virginia (warm) is nearest anyway → 201 at once.
  const second = await given(app).signedIn()
  const boston = await assign(app, second.headers, { app: world.app }, { 'cloudfront-viewer-latitude': '42.36', 'cloudfront-viewer-longitude': '-71.06' })
  t.equal(boston.statusCode, 201)
  t.equal(boston.json().region, world.virginia)

  // Ireland in maintenance: a Dublin client goes to the next nearest open region.
  await app.db.insertInto('maintenance').values({ scope: world.ireland, message: 'GPU upgrade', ends_at: new Date(Date.now() + 600_000) }).execute()
  const third = await given(app).signedIn()
  const dublin = await assign(app, third.headers, { app: world.app }, { 'cloudfront-viewer-latitude': '53.35', 'cloudfront-viewer-longitude': '-6.26' })
  t.equal(dublin.statusCode, 202)
  t.equal(dublin.json().container.region, world.virginia)
})

t.test('assignContainer › valid › no region and no geo headers: GeoIP on the client address (private addresses ignored)', async (t) => {
  const app = await fileApp()
  const world = await threeRegions(app)
  const fromJapan = await given(app).signedIn()
  const fromLan = await given(app).signedIn()
  // 1.0.16.1 is in APNIC's Japanese allocation; GeoLite places it in Japan.
  const jp = await assign(app, fromJapan.headers, { app: world.app }, {}, '1.0.16.1')
  const lan = await assign(app, fromLan.headers, { app: world.app }, {}, '192.168.1.20')
  t.equal(jp.json().container.region, world.tokyo)
  t.equal(lan.json().container.region, world.tokyo, 'a private address has no location: catalog order')
  // Prove the lookup decides: a US address goes to Virginia.
  const fromUs = await given(app).signedIn()
  const us = await assign(app, fromUs.headers, { app: world.app }, {}, '8.8.8.8')
  t.equal(us.json().container.region, world.virginia)
})

t.test('listWarmPools › valid › target, ready and starting per app and region, filtered', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  await app.db.updateTable('app_region').set({ warm_pool_target: 3 }).where('app_id', '=', offer.app).execute()
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)
  const dev = await given(app).signedIn({ role: 'developer' })

  const res = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}`, headers: dev.headers })

  t.equal(res.statusCode, 200)
  t.match(res.json(), { items: [{ app: offer.app, region: offer.region, target: 3, ready: 2, starting: 0 }], nextCursor: null })
  t.equal(res.json().items.length, 1)
  const other = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}&region=zz-nowhere-1`, headers: dev.headers })
  t.same(other.json(), { items: [], nextCursor: null })
})

t.test('listWarmPools › insufficient permissions › a user is 403, no token 401', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/warm-pools', headers: user.headers })).statusCode, 403)
  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/warm-pools' })).statusCode, 401)
})

t.test('listWarmPools › invalid input › a malformed filter is 400', async (t) => {
  const app = await fileApp()
  const dev = await given(app).signedIn({ role: 'developer' })
  const res = await app.inject({ method: 'GET', url: '/v1/admin/warm-pools?region=NOT%20A%20REGION', headers: dev.headers })
  t.equal(res.statusCode, 400)
  t.match(res.headers['content-type'], /application\/problem\+json/)
})

t.test('setWarmPoolTarget › valid › sets the target, audited; the next schedule pass fills it', async (t) => {
  const app = await build(t)
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })

  const res = await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { target: 2 }, headers: dev.headers })

  t.equal(res.statusCode, 200)
  t.match(res.json(), { app: offer.app, region: offer.region, target: 2, ready: 0, starting: 0 })
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'warm_pool.target_set').where('actor_id', '=', dev.account.id).execute()
  t.match(audit, [{ target_id: `${offer.app}/${offer.region}`, details: { from: 0, to: 2 } }])
  t.match(await app.schedules.runOnce('warm-pools'), { started: 2 })
  const pools = await app.inject({ method: 'GET', url: `/v1/admin/warm-pools?app=${offer.app}`, headers: dev.headers })
  t.match(pools.json().items, [{ target: 2, starting: 2 }])
})

t.test('setWarmPoolTarget › insufficient permissions › a user (no fleet:write) is 403 and nothing changes', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { target: 9 }, headers: user.headers })
  t.equal(res.statusCode, 403)
  const row = await app.db.selectFrom('app_region').select('warm_pool_target').where('app_id', '=', offer.app).executeTakeFirstOrThrow()
  t.equal(row.warm_pool_target, 0)
  const readOnly = await given(app).token({ role: 'developer', scopes: ['fleet:read'] })
  t.equal((await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload: { target: 9 }, headers: bearer(readOnly) })).statusCode, 403)
})

t.test('setWarmPoolTarget › invalid input › a negative, huge or missing target is 400', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })
  for (const payload of [{ target: -1 }, { target: 1001 }, {}, { target: '3' }, { target: 2, extra: true }]) {
    const res = await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/${offer.region}`, payload, headers: dev.headers })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
})

t.test('setWarmPoolTarget › non-existing › an app not offered in the region is 404', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const dev = await given(app).signedIn({ role: 'developer' })
  const res = await app.inject({ method: 'PUT', url: `/v1/admin/warm-pools/${offer.app}/zz-nowhere-1`, payload: { target: 1 }, headers: dev.headers })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
})

t.test('listContainers › valid › filters by state, app and region; admins list everyone\'s without their connection info', async (t) => {
  const app = await fileApp()
  const { offer, user, container } = await given(app).assignedContainer()
  const admin = await given(app).signedIn({ role: 'admin' })

  const mine = await app.inject({ method: 'GET', url: `/v1/containers?state=in_use&app=${offer.app}&region=${offer.region}`, headers: user.headers })
  t.same(mine.json().items.map((c: { id: string }) => c.id), [container.id])
  const none = await app.inject({ method: 'GET', url: '/v1/containers?state=stopped', headers: user.headers })
  t.same(none.json().items, [])

  const all = await app.inject({ method: 'GET', url: `/v1/containers?all=true&user=${user.account.id}`, headers: admin.headers })
  t.equal(all.statusCode, 200)
  t.match(all.json().items, [{ id: container.id, userId: user.account.id, connection: null }])
  const key = (await app.db.selectFrom('container').select('aes_key').where('id', '=', container.id).executeTakeFirstOrThrow()).aes_key
  t.notMatch(all.body, key, 'an admin never sees another user\'s AES key')
})

t.test('listContainers › insufficient permissions › all=true or user= is 403 for a non-admin', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: '/v1/containers?all=true', headers: user.headers })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'forbidden' })
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers?all=true&user=${user.account.id}`, headers: user.headers })).statusCode, 403)
})
