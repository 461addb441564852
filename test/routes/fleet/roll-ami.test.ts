import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const newAmi = 'ami-0fedcba9876543210'

/** A region with `n` active clusters made through the API (the simulated provider), the worker running. */
async function regionWithClusters (app: App, n: number) {
  const region = await given(app).region()
  await app.db.updateTable('region').set({ current_ami: 'ami-0123456789abcdef0' }).where('code', '=', region.code).execute()
  const dev = await given(app).signedIn({ role: 'developer' })
  app.queue.startWorker(2)
  const ids: string[] = []
  for (let i = 0; i < n; i++) {
    const res = await app.inject({ method: 'POST', url: '/v1/admin/clusters', payload: { region: region.code, instanceType: 'g4dn.xlarge', minSize: 0, maxSize: 2 }, headers: dev.headers })
    ids.push(res.json().cluster.id)
  }
  await until(async () => (await app.db.selectFrom('cluster').select('status').where('id', 'in', ids).execute()).every((c) => c.status === 'active'))
  return { region: region.code, dev, ids }
}

const roll = (app: App, region: string, headers: Record<string, string>, payload: object) =>
  app.inject({ method: 'POST', url: `/v1/admin/regions/${region}/ami`, payload, headers })

t.test('rollAmi › valid › a rolling roll refreshes each cluster in turn; the parent job shows its children; the region and clusters end on the AMI', async (t) => {
  const app = await build(t, { CLUSTER_POLL_MS: '20' })
  const { region, dev, ids } = await regionWithClusters(app, 2)

  const res = await roll(app, region, dev.headers, { ami: newAmi, strategy: 'rolling' })

  t.equal(res.statusCode, 202)
  t.equal(res.headers.location, `/v1/jobs/${res.json().id}`)
  t.match(res.json(), { kind: 'roll_ami', state: 'queued', parentId: null })
  t.equal((await app.db.selectFrom('region').select('current_ami').where('code', '=', region).executeTakeFirstOrThrow()).current_ami, newAmi, 'new clusters use it at once')
  const read = () => app.inject({ method: 'GET', url: `/v1/jobs/${res.json().id}`, headers: dev.headers })
  t.ok(await until(async () => (await read()).json().state === 'succeeded'))
  const job = (await read()).json()
  t.equal(job.children.length, 2)
  t.match(job.children, [{ state: 'succeeded', progress: 100, result: { clusterId: ids[0] } }, { state: 'succeeded', result: { clusterId: ids[1] } }])
  const clusters = await app.db.selectFrom('cluster').select('ami').where('id', 'in', ids).execute()
  t.same(clusters.map((c) => c.ami), [newAmi, newAmi])
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'region.ami_roll').where('target_id', '=', region).execute()
  t.match(audit, [{ actor_id: dev.account.id, details: { to: newAmi, strategy: 'rolling', clusters: 2 } }])
})

t.test('rollAmi › valid › a failed refresh stops the roll: that cluster\'s child fails, the later ones are cancelled and keep their AMI', async (t) => {
  const app = await build(t, { CLUSTER_POLL_MS: '20' })
  const { region, dev, ids } = await regionWithClusters(app, 2)
  // The first cluster's group is unknown to the cloud: its refresh cannot start.
  await app.db.updateTable('cluster').set({ name: 'fractal-lost-group' }).where('id', '=', ids[0]!).execute()
  await app.db.insertInto('maintenance').values({ scope: region, message: 'AMI roll', ends_at: new Date(Date.now() + 600_000) }).execute()

  const res = await roll(app, region, dev.headers, { ami: newAmi })
  t.equal(res.statusCode, 202, 'the default strategy is allowed in maintenance')
  const read = () => app.inject({ method: 'GET', url: `/v1/jobs/${res.json().id}`, headers: dev.headers })
  t.ok(await until(async () => (await read()).json().state === 'failed'))
  const job = (await read()).json()
  t.match(job, { errorCode: 'ami_roll_failed', children: [{ state: 'failed', errorCode: 'instance_refresh_failed' }, { state: 'cancelled' }] })
  const second = await app.db.selectFrom('cluster').select('ami').where('id', '=', ids[1]!).executeTakeFirstOrThrow()
  t.equal(second.ami, 'ami-0123456789abcdef0', 'the later cluster was not touched')
})

t.test('rollAmi › invalid input › a malformed AMI, an unknown strategy or field is 400; outside maintenance the default strategy is 409; one roll at a time', async (t) => {
  const app = await build(t, { CLUSTER_POLL_MS: '60000' })
  const region = await given(app).region()
  const dev = await given(app).signedIn({ role: 'developer' })
  for (const payload of [{ ami: 'ami-xyz' }, { ami: newAmi, strategy: 'yolo' }, { ami: newAmi, extra: 1 }, {}]) {
    t.equal((await roll(app, region.code, dev.headers, payload)).statusCode, 400, JSON.stringify(payload))
  }
  const outside = await roll(app, region.code, dev.headers, { ami: newAmi })
  t.equal(outside.statusCode, 409)
  t.match(outside.json(), { code: 'conflict', detail: /maintenance window/ })
  t.equal((await app.db.selectFrom('region').select('current_ami').where('code', '=', region.code).executeTakeFirstOrThrow()).current_ami, null, 'nothing changed')
  t.equal((await roll(app, region.code, dev.headers, { ami: newAmi, strategy: 'rolling' })).statusCode, 202)
  const again = await roll(app, region.code, dev.headers, { ami: newAmi, strategy: 'rolling' })
  t.equal(again.statusCode, 409, 'a roll is running in this region')
})

t.test('rollAmi › insufficient permissions › a user or a fleet:read token is 403, no token 401', async (t) => {
  const app = await fileApp()
  const region = await given(app).region()
  const user = await given(app).signedIn()
  t.equal((await roll(app, region.code, user.headers, { ami: newAmi, strategy: 'rolling' })).statusCode, 403)
  const reader = { authorization: `Bearer ${await given(app).token({ role: 'developer', scopes: ['fleet:read'] })}` }
  t.equal((await roll(app, region.code, reader, { ami: newAmi, strategy: 'rolling' })).statusCode, 403)
  t.equal((await app.inject({ method: 'POST', url: `/v1/admin/regions/${region.code}/ami`, payload: { ami: newAmi } })).statusCode, 401)
})

t.test('rollAmi › non-existing › an unknown region is 404', async (t) => {
  const app = await fileApp()
  const dev = await given(app).signedIn({ role: 'developer' })
  const res = await roll(app, 'zz-nowhere-1', dev.headers, { ami: newAmi, strategy: 'rolling' })
  t.equal(res.statusCode, 404)
  t.match(res.json(), { code: 'not_found' })
})
