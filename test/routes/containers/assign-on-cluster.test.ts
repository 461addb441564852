// Issue 23 item 4: a developer starts a container on a named cluster (testing its AMI before a roll).
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const assign = (app: App, headers: Record<string, string>, body: object, key: string = randomUUID()) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': key } })

/** An offer with a warm container, and a second (canary) cluster in its region. */
async function canary (app: App) {
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const cluster = await app.db.insertInto('cluster')
    .values({ region_code: offer.region, name: `canary-${randomUUID().slice(0, 8)}`, capacity: 0, capacity_provider: null })
    .returningAll().executeTakeFirstOrThrow()
  return { offer, warm, cluster }
}

t.test('assignContainer › valid › with cluster, a developer\'s container starts on that cluster (never from the warm pool, room or not)', async (t) => {
  const app = await build(t, { SIMULATED_START_MS: '0' })
  const { offer, warm, cluster } = await canary(app)
  const developer = await given(app).signedIn({ role: 'developer' })

  const res = await assign(app, developer.headers, { app: offer.app, cluster: cluster.name })

  t.equal(res.statusCode, 202, res.body)
  const { job, container } = res.json()
  t.match(container, { region: offer.region, state: 'creating' })
  t.not(container.id, warm.id, 'not the warm container')
  const row = await app.db.selectFrom('container').select(['cluster_id']).where('id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(row.cluster_id, cluster.id, 'pinned to the cluster')

  app.queue.startWorker(2)
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: developer.headers })).json().state === 'succeeded'))
  const placed = await app.db.selectFrom('container').select(['cluster_id', 'task_arn']).where('id', '=', container.id).executeTakeFirstOrThrow()
  t.equal(placed.cluster_id, cluster.id, 'the task ran there, though the cluster has no spare room by its capacity')
  t.match(placed.task_arn, new RegExp(`/${cluster.name}/`))
  const still = await app.db.selectFrom('container').select(['user_id', 'state']).where('id', '=', warm.id).executeTakeFirstOrThrow()
  t.same(still, { user_id: null, state: 'available' }, 'the warm pool is untouched')

  const byId = await assign(app, developer.headers, { app: (await given(app).app({ regions: [offer.region] })).id, cluster: cluster.id, region: offer.region })
  t.equal(byId.statusCode, 202, 'a cluster id, with its own region, works too')
})

t.test('assignContainer › insufficient permissions › cluster without fleet:write is 403; nothing is written', async (t) => {
  const app = await build(t)
  const { offer, cluster } = await canary(app)
  const user = await given(app).signedIn()
  const res = await assign(app, user.headers, { app: offer.app, cluster: cluster.name })
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'forbidden', detail: /fleet:write/ })
  const rows = await app.db.selectFrom('container').select('id').where('user_id', '=', user.account.id).execute()
  t.equal(rows.length, 0)
})

t.test('assignContainer › invalid input › an unknown or inactive cluster, or one outside the region asked for, is 422', async (t) => {
  const app = await build(t)
  const { offer, cluster } = await canary(app)
  const elsewhere = await given(app).offer()
  const developer = await given(app).signedIn({ role: 'developer' })
  const deleting = await app.db.insertInto('cluster').values({ region_code: offer.region, name: `old-${randomUUID().slice(0, 8)}`, status: 'deleting' }).returningAll().executeTakeFirstOrThrow()
  for (const [body, label] of [
    [{ app: offer.app, cluster: 'no-such-cluster' }, 'unknown'],
    [{ app: offer.app, cluster: deleting.name }, 'not active'],
    [{ app: offer.app, cluster: cluster.name, region: elsewhere.region }, 'another region']
  ] as const) {
    const res = await assign(app, developer.headers, body)
    t.equal(res.statusCode, 422, label)
    t.match(res.json(), { code: 'unprocessable', errors: [{ field: '/body/cluster' }] }, label)
  }
  t.equal((await assign(app, developer.headers, { app: offer.app, cluster: 'bad name!' })).statusCode, 400, 'a malformed name')
  const rows = await app.db.selectFrom('container').select('id').where('user_id', '=', developer.account.id).execute()
  t.equal(rows.length, 0, 'nothing written')
})
