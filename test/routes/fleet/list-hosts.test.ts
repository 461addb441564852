import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>

const bootstrapSecret = 'a-long-shared-bootstrap-secret'
const instanceId = () => `i-${randomBytes(8).toString('hex')}`

/** A host that shook hands through the API; `secret` is its X-Host-Secret. */
async function givenHost (app: App, region: string, fields: Partial<{ ip: string, instanceType: string }> = {}) {
  const instance = instanceId()
  const res = await app.inject({
    method: 'POST',
    url: '/v1/hosts/handshake',
    payload: { instanceId: instance, region, ip: fields.ip ?? '198.51.100.20', instanceType: fields.instanceType ?? 'g4dn.xlarge', ami: 'ami-0abcdef1234567890', bootstrapSecret }
  })
  if (res.statusCode !== 201) throw new Error(`handshake: ${res.statusCode} ${res.body}`)
  const { hostId, secret } = res.json() as { hostId: string, secret: string }
  return { id: hostId, secret, instanceId: instance }
}
const list = (app: App, headers: Record<string, string>, query: Record<string, string> = {}) =>
  app.inject({ method: 'GET', url: '/v1/admin/hosts', query, headers })
const ids = (body: { items: Array<{ id: string }> }) => body.items.map((h) => h.id)

t.test('listHosts › valid › newest first, with memory, status and last heartbeat; never the secret', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const offer = await given(app).offer()
  const older = await givenHost(app, offer.region)
  const newer = await givenHost(app, offer.region, { ip: '198.51.100.21', instanceType: 'g5.xlarge' })
  const beat = await app.inject({ method: 'POST', url: `/v1/hosts/${newer.id}/heartbeats`, payload: { totalMemoryKb: 16337000, freeMemoryKb: 9120000, availableMemoryKb: 12000000 }, headers: { 'x-host-secret': newer.secret } })
  t.equal(beat.statusCode, 204)
  const dev = await given(app).signedIn({ role: 'developer' })

  const res = await list(app, dev.headers)

  t.equal(res.statusCode, 200)
  const body = res.json()
  t.same(ids(body), [newer.id, older.id])
  t.equal(body.nextCursor, null)
  const row = await app.db.selectFrom('host').selectAll().where('id', '=', newer.id).executeTakeFirstOrThrow()
  t.same(body.items[0], {
    id: newer.id,
    instanceId: newer.instanceId,
    region: offer.region,
    clusterId: null,
    ip: '198.51.100.21',
    ami: 'ami-0abcdef1234567890',
    instanceType: 'g5.xlarge',
    status: 'active',
    memory: { totalKb: 16337000, freeKb: 9120000, availableKb: 12000000 },
    lastHeartbeatAt: row.last_heartbeat_at!.toISOString(),
    createdAt: row.created_at.toISOString()
  })
  t.same(body.items[1].memory, { totalKb: null, freeKb: null, availableKb: null }, 'no heartbeat yet: no figures')
  for (const host of [older, newer]) t.notMatch(res.body, host.secret, 'the secret is never listed')
  t.notMatch(res.body, row.secret_hash, 'nor its hash')
})

t.test('listHosts › valid › filtered by region and by status', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const east = await given(app).region()
  const west = await given(app).region()
  const eastActive = await givenHost(app, east.code)
  const eastDraining = await givenHost(app, east.code)
  const westDead = await givenHost(app, west.code)
  const westActive = await givenHost(app, west.code)
  await app.inject({ method: 'POST', url: `/v1/hosts/${eastDraining.id}/heartbeats`, payload: { dying: true }, headers: { 'x-host-secret': eastDraining.secret } })
  await app.db.updateTable('host').set({ status: 'dead' }).where('id', '=', westDead.id).execute()
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))

  t.same(ids((await list(app, reader, { region: east.code })).json()), [eastDraining.id, eastActive.id])
  t.same(ids((await list(app, reader, { region: west.code })).json()), [westActive.id, westDead.id])
  t.same(ids((await list(app, reader, { status: 'active' })).json()), [westActive.id, eastActive.id])
  t.same(ids((await list(app, reader, { status: 'draining' })).json()), [eastDraining.id])
  t.same(ids((await list(app, reader, { status: 'dead', region: west.code })).json()), [westDead.id])
  t.same(ids((await list(app, reader, { status: 'dead', region: east.code })).json()), [])
  t.same((await list(app, reader, { region: 'zz-nowhere-1' })).json(), { items: [], nextCursor: null }, 'an unknown region is an empty page, not an error')
})

t.test('listHosts › valid › pages with nextCursor: every host once, newest first', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const created: string[] = []
  for (let i = 0; i < 5; i++) created.push((await givenHost(app, region.code)).id)
  const dev = await given(app).signedIn({ role: 'developer' })

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await list(app, dev.headers, cursor ? { limit: '2', cursor } : { limit: '2' })
    t.equal(res.statusCode, 200)
    t.ok(res.json().items.length <= 2)
    seen.push(...ids(res.json()))
    cursor = res.json().nextCursor
    pages++
  } while (cursor !== null && pages < 10)

  t.same(seen, created.reverse())
  t.equal(pages, 3)
  // The cursor combines with the filters.
  const first = await list(app, dev.headers, { limit: '4', status: 'active', region: region.code })
  const rest = await list(app, dev.headers, { limit: '4', status: 'active', region: region.code, cursor: first.json().nextCursor })
  t.same([...ids(first.json()), ...ids(rest.json())], created)
  t.equal(rest.json().nextCursor, null)
})

t.test('listHosts › valid › hosts created within the same millisecond are not skipped between pages', async (t) => {
  // Hosts that shake hands at the same moment (a scaling group launching several) get created_at values
  // a few microseconds apart; PostgreSQL keeps microseconds, a JavaScript Date only milliseconds.
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const at = ['2026-03-01 12:00:00.123900+00', '2026-03-01 12:00:00.123600+00', '2026-03-01 12:00:00.123300+00', '2026-03-01 12:00:00.122000+00']
  const rows = await app.db.insertInto('host')
    .values(at.map((createdAt) => ({ instance_id: instanceId(), region_code: region.code, secret_hash: randomBytes(32).toString('base64url'), created_at: createdAt })))
    .returning('id').execute()
  const dev = await given(app).signedIn({ role: 'developer' })

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await list(app, dev.headers, cursor ? { limit: '1', cursor } : { limit: '1' })
    t.equal(res.statusCode, 200)
    seen.push(...ids(res.json()))
    cursor = res.json().nextCursor
    pages++
  } while (cursor !== null && pages < 10)

  // Stored to the millisecond, the first three tie and come in id order; what matters is that none is lost.
  t.equal(seen.length, rows.length, 'no host twice')
  t.same([...seen].sort(), rows.map((r) => r.id).sort(), 'every host once')
  t.equal(seen.at(-1), rows.at(-1)!.id, 'the older millisecond last')
})

t.test('listHosts › insufficient permissions › a user (no fleet:read) is 403; no token or a bad one is 401', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  const user = await given(app).signedIn()

  const asUser = await list(app, user.headers)
  t.equal(asUser.statusCode, 403)
  t.match(asUser.headers['content-type'], /application\/problem\+json/)
  t.equal(asUser.json().code, 'forbidden')
  t.notMatch(asUser.body, host.id)

  const writeOnly = await list(app, bearer(await given(app).token({ role: 'developer', scopes: ['fleet:write'] })))
  t.equal(writeOnly.statusCode, 403, 'fleet:write alone does not read')

  const bad: Array<Record<string, string>> = [{}, { authorization: 'Bearer not-a-token' }, { 'x-host-secret': host.secret }]
  for (const headers of bad) {
    const res = await list(app, headers)
    t.equal(res.statusCode, 401, JSON.stringify(Object.keys(headers)))
    t.equal(res.json().code, 'unauthorized')
  }
})

t.test('listHosts › invalid input › a bad status, limit, region or cursor is 400 naming it', async (t) => {
  const app = await build(t)
  const dev = await given(app).signedIn({ role: 'developer' })

  const cases: Array<[Record<string, string>, string]> = [
    [{ status: 'gone' }, 'status'],
    [{ status: 'ACTIVE' }, 'status'],
    [{ limit: '0' }, 'limit'],
    [{ limit: '101' }, 'limit'],
    [{ limit: 'ten' }, 'limit'],
    [{ region: 'Not A Region' }, 'region'],
    [{ cursor: 'not a cursor!' }, 'cursor']
  ]
  for (const [query, field] of cases) {
    const res = await list(app, dev.headers, query)
    t.equal(res.statusCode, 400, JSON.stringify(query))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed', JSON.stringify(query))
    t.match(JSON.stringify(res.json().errors), field, `names ${field}`)
  }

  const forged = await list(app, dev.headers, { cursor: Buffer.from(`yesterday|${randomUUID()}`).toString('base64url') })
  t.equal(forged.statusCode, 400, 'a well-formed cursor this API did not issue')
  t.equal(forged.json().code, 'bad_request')
})
