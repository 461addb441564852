import { randomBytes, randomUUID } from 'node:crypto'
import t from 'tap'
import { awsSettings } from '../../helpers/aws.js'
import { build, fileApp } from '../../helpers/build.js'
import { ecsModel, type EcsModel } from '../../helpers/ecs-model.js'
import { given } from '../../helpers/given.js'
import { identityAuthority, signedIdentity } from '../../helpers/identity-document.js'
import { histogramTotals } from '../../helpers/metrics.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>

const bootstrapSecret = 'a-long-shared-bootstrap-secret'
const instanceId = () => `i-${randomBytes(8).toString('hex')}`
const longAgo = () => new Date(Date.now() - 3_600_000)

/** A host that shook hands (through the API) in `region`; `secret` is its X-Host-Secret. */
async function givenHost (app: App, region: string, ip = '198.51.100.20') {
  const res = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: { instanceId: instanceId(), region, ip, bootstrapSecret } })
  if (res.statusCode !== 201) throw new Error(`handshake: ${res.statusCode} ${res.body}`)
  const { hostId, secret } = res.json() as { hostId: string, secret: string }
  return { id: hostId, secret }
}
const hostRow = (app: App, id: string) => app.db.selectFrom('host').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const beat = (app: App, hostId: string, payload: object, headers: Record<string, string> = {}) =>
  app.inject({ method: 'POST', url: `/v1/hosts/${hostId}/heartbeats`, payload, headers })

t.test('hostHeartbeat › valid › memory figures are stored and last_heartbeat_at moves on', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  const before = longAgo()
  await app.db.updateTable('host').set({ last_heartbeat_at: before }).where('id', '=', host.id).execute()

  const res = await beat(app, host.id, { totalMemoryKb: 16337000, freeMemoryKb: 9120000, availableMemoryKb: 12000000, instanceType: 'g4dn.2xlarge', dying: false }, { 'x-host-secret': host.secret })

  t.equal(res.statusCode, 204)
  t.equal(res.body, '')
  const row = await hostRow(app, host.id)
  t.match(row, { memory_total_kb: 16337000, memory_free_kb: 9120000, memory_available_kb: 12000000, instance_type: 'g4dn.2xlarge', status: 'active' })
  t.ok(row.last_heartbeat_at! > before, 'last_heartbeat_at is now')
  t.ok(Date.now() - row.last_heartbeat_at!.getTime() < 60_000)
})

t.test('hostHeartbeat › valid › the original agent\'s field names, with AuthToken in the body instead of the header', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  const before = longAgo()
  await app.db.updateTable('host').set({ last_heartbeat_at: before }).where('id', '=', host.id).execute()

  const res = await beat(app, host.id, { AuthToken: host.secret, TotalRAMinKB: 8000000, FreeRAMinKB: 1000000, AvailRAMinKB: 2000000, InstanceType: 'g4dn.xlarge', IsDyingHeartbeat: false })

  t.equal(res.statusCode, 204)
  const row = await hostRow(app, host.id)
  t.match(row, { memory_total_kb: 8000000, memory_free_kb: 1000000, memory_available_kb: 2000000, instance_type: 'g4dn.xlarge', status: 'active' })
  t.ok(row.last_heartbeat_at! > before)
})

t.test('hostHeartbeat › valid › a dying heartbeat marks the host draining (either field name)', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const one = await givenHost(app, region.code)
  const two = await givenHost(app, region.code)

  t.equal((await beat(app, one.id, { dying: true }, { 'x-host-secret': one.secret })).statusCode, 204)
  t.equal((await beat(app, two.id, { AuthToken: two.secret, IsDyingHeartbeat: true })).statusCode, 204)

  t.equal((await hostRow(app, one.id)).status, 'draining')
  t.equal((await hostRow(app, two.id)).status, 'draining')
})

t.test('hostHeartbeat › valid › a dead host that beats again is active', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  await app.db.updateTable('host').set({ status: 'dead', last_heartbeat_at: longAgo() }).where('id', '=', host.id).execute()

  t.equal((await beat(app, host.id, { totalMemoryKb: 1 }, { 'x-host-secret': host.secret })).statusCode, 204)
  t.equal((await hostRow(app, host.id)).status, 'active')
})

t.test('hostHeartbeat › valid › heartbeats of many hosts at once share an UPDATE, each with its own figures; a wrong secret among them is 401 and changes nothing', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const hosts = await Promise.all(Array.from({ length: 12 }, () => givenHost(app, region.code)))
  const victim = hosts[0]!
  const before = await hostRow(app, victim.id)
  // The file's tests share the app: this test's batches are what the histogram gained during it.
  const batchesBefore = await histogramTotals(app, 'host_heartbeat_batch_size')

  const [wrong, ...answers] = await Promise.all([
    beat(app, victim.id, { totalMemoryKb: 1, freeMemoryKb: 1, availableMemoryKb: 1, dying: true }, { 'x-host-secret': hosts[1]!.secret }),
    ...hosts.slice(1).map((host, i) => beat(app, host.id, { totalMemoryKb: 1000 + i, freeMemoryKb: 500 + i, availableMemoryKb: 700 + i, dying: i === 0 }, { 'x-host-secret': host.secret }))
  ])

  t.equal(wrong!.statusCode, 401, 'another host\'s secret: refused')
  t.same(answers.map((a) => a.statusCode), hosts.slice(1).map(() => 204), 'the others recorded')
  t.same(await hostRow(app, victim.id), before, 'the refused one changed nothing')
  for (const [i, host] of hosts.slice(1).entries()) {
    t.match(await hostRow(app, host.id), { memory_total_kb: 1000 + i, memory_free_kb: 500 + i, memory_available_kb: 700 + i, status: i === 0 ? 'draining' : 'active' }, `host ${i + 1}'s own figures`)
  }
  const batchesAfter = await histogramTotals(app, 'host_heartbeat_batch_size')
  const sum = batchesAfter.sum - batchesBefore.sum
  const count = batchesAfter.count - batchesBefore.count
  t.equal(sum, 11, 'every accepted heartbeat went through a batch (the wrong secret was refused before)')
  t.ok(count < sum, `fewer statements than heartbeats (${count} for ${sum})`)
})

t.test('hostHeartbeat › valid › one host beating several times at once: every beat 204, the host recorded once with one of them', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  const others = await Promise.all(Array.from({ length: 5 }, () => givenHost(app, region.code)))

  const answers = await Promise.all([
    ...others.map((o) => beat(app, o.id, { totalMemoryKb: 1 }, { 'x-host-secret': o.secret })),
    ...[101, 102, 103].map((kb) => beat(app, host.id, { totalMemoryKb: kb }, { 'x-host-secret': host.secret }))
  ])

  t.same(answers.map((a) => a.statusCode), answers.map(() => 204))
  t.match((await hostRow(app, host.id)).memory_total_kb, /^10[123]$/)
})

t.test('hostHeartbeat › insufficient permissions › a wrong secret, another host\'s secret or none is 401 and nothing changes', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  const other = await givenHost(app, region.code)
  const before = longAgo()
  await app.db.updateTable('host').set({ last_heartbeat_at: before, memory_total_kb: 100, memory_free_kb: 50, memory_available_kb: 60 }).where('id', '=', host.id).execute()
  const snapshot = await hostRow(app, host.id)
  const figures = { totalMemoryKb: 999, freeMemoryKb: 999, availableMemoryKb: 999, dying: true }

  const cases: Array<[string, object, Record<string, string>]> = [
    ['a wrong secret', figures, { 'x-host-secret': randomBytes(32).toString('base64url') }],
    ['another host\'s secret', figures, { 'x-host-secret': other.secret }],
    ['another host\'s secret as AuthToken', { ...figures, AuthToken: other.secret }, {}],
    ['no secret', figures, {}],
    ['an empty secret', figures, { 'x-host-secret': '' }],
    ['the hash instead of the secret', figures, { 'x-host-secret': snapshot.secret_hash }],
    ['a wrong header wins over a right AuthToken', { ...figures, AuthToken: host.secret }, { 'x-host-secret': other.secret }]
  ]
  for (const [label, payload, headers] of cases) {
    const res = await beat(app, host.id, payload, headers)
    t.equal(res.statusCode, 401, label)
    t.match(res.headers['content-type'], /application\/problem\+json/, label)
    t.equal(res.json().code, 'unauthorized', label)
  }

  t.same(await hostRow(app, host.id), snapshot, 'last_heartbeat_at, memory and status unchanged')
})

t.test('hostHeartbeat › invalid input › negative or non-integer memory or an unknown field is 400, a malformed host id 401 (no host has it); nothing changes', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  await app.db.updateTable('host').set({ last_heartbeat_at: longAgo() }).where('id', '=', host.id).execute()
  const snapshot = await hostRow(app, host.id)
  const headers = { 'x-host-secret': host.secret }

  const cases: Array<[object, string]> = [
    [{ totalMemoryKb: -1 }, 'totalMemoryKb'],
    [{ FreeRAMinKB: -5 }, 'FreeRAMinKB'],
    [{ availableMemoryKb: 1.5 }, 'availableMemoryKb'],
    [{ totalMemoryKb: '16337000' }, 'totalMemoryKb'],
    [{ dying: 'yes' }, 'dying'],
    [{ InstanceID: 'not-an-instance' }, 'InstanceID'],
    [{ cpuPercent: 12 }, 'cpuPercent']
  ]
  for (const [payload, field] of cases) {
    const res = await beat(app, host.id, payload, headers)
    t.equal(res.statusCode, 400, field)
    t.match(res.headers['content-type'], /application\/problem\+json/, field)
    t.equal(res.json().code, 'validation_failed', field)
    t.match(JSON.stringify(res.json().errors), field, `names ${field}`)
  }

  // The secret is checked before anything is validated, and no host has that id.
  const badId = await beat(app, 'not-a-uuid', { totalMemoryKb: 1 }, headers)
  t.equal(badId.statusCode, 401)
  t.notOk('errors' in badId.json(), 'names no field')

  const noBody = await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/heartbeats`, headers })
  t.equal(noBody.statusCode, 400, 'the body is required')
  const text = await app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/heartbeats`, payload: 'alive', headers: { ...headers, 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415)

  t.same(await hostRow(app, host.id), snapshot, 'nothing changed')
})

t.test('hostHeartbeat › invalid input › a memory figure beyond 64 bits or an instance type with a NUL is 400 on its own: heartbeats sent with it are recorded', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const [bad, good] = await Promise.all([givenHost(app, region.code), givenHost(app, region.code)])
  const before = await hostRow(app, bad.id)

  const [huge, nul, fine] = await Promise.all([
    app.inject({ method: 'POST', url: `/v1/hosts/${bad.id}/heartbeats`, headers: { 'x-host-secret': bad.secret, 'content-type': 'application/json' }, payload: '{"totalMemoryKb": 99999999999999999999999}' }),
    beat(app, bad.id, { instanceType: 'g4dn\u0000' }, { 'x-host-secret': bad.secret }),
    beat(app, good.id, { totalMemoryKb: 4242 }, { 'x-host-secret': good.secret })
  ])

  t.equal(huge!.statusCode, 400)
  t.equal(huge!.json().code, 'bad_request')
  t.equal(nul!.statusCode, 400)
  t.equal(fine!.statusCode, 204, 'the heartbeat sent alongside is recorded')
  t.equal((await hostRow(app, good.id)).memory_total_kb, 4242)
  t.same(await hostRow(app, bad.id), before, 'nothing changed for the refused ones')
})

t.test('hostHeartbeat › non-existing › an unknown host id is the same 401 as a wrong secret (no existence leak)', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const existing = (await app.db.selectFrom('host').select('id').execute()).map((r) => r.id)
  const region = await given(app).region()
  const host = await givenHost(app, region.code)

  const unknown = await beat(app, randomUUID(), { totalMemoryKb: 1 }, { 'x-host-secret': host.secret })
  const wrong = await beat(app, host.id, { totalMemoryKb: 1 }, { 'x-host-secret': 'x'.repeat(43) })

  t.equal(unknown.statusCode, 401)
  t.equal(wrong.statusCode, 401)
  const strip = (body: Record<string, unknown>) => ({ ...body, instance: undefined, requestId: undefined })
  t.same(strip(unknown.json()), strip(wrong.json()), 'the same problem')
  t.equal(await app.db.selectFrom('host').select('id').where('id', 'not in', [host.id, ...existing]).executeTakeFirst(), undefined, 'no row created')
})

/** A region with an app, two containers on the host at 198.51.100.7 (one warm, one in use with an open session) and one elsewhere. */
async function busyRegion (app: App) {
  const g = given(app)
  const offer = await g.offer()
  const held = await g.warmContainer(offer)
  const user = await g.signedIn()
  const assigned = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app, region: offer.region }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  if (assigned.statusCode !== 201 || assigned.json().id !== held.id) throw new Error(`assign: ${assigned.statusCode} ${assigned.body}`)
  // The container says a client connected: a container_session opens.
  const ping = await app.inject({ method: 'POST', url: `/v1/containers/${held.id}/ping`, payload: { available: false }, headers: { 'x-container-secret': held.secret } })
  if (ping.statusCode !== 204) throw new Error(`ping: ${ping.statusCode} ${ping.body}`)
  const warm = await g.warmContainer(offer)
  const elsewhere = await g.warmContainer(offer)
  await app.db.updateTable('container').set({ host_ip: '198.51.100.99' }).where('id', '=', elsewhere.id).execute()
  return { offer, user, held, warm, elsewhere }
}

t.test('hostHeartbeat › faults › a host silent past HOST_DEAD_AFTER_MS is marked dead by reap-hosts; its containers fail and their sessions close', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_DEAD_AFTER_MS: '1000' })
  const region = await busyRegion(app)
  // The same address in another region is another machine.
  const otherOffer = await given(app).offer()
  const sameIpOtherRegion = await given(app).warmContainer(otherOffer)
  const silent = await givenHost(app, region.offer.region, '198.51.100.7')
  const fresh = await givenHost(app, region.offer.region, '198.51.100.99')
  const sameIpHost = await givenHost(app, otherOffer.region, '198.51.100.7')
  t.equal(await app.db.selectFrom('container_session').select('id').where('container_id', '=', region.held.id).where('logoff_at', 'is', null).executeTakeFirst() !== undefined, true, 'a session is open')
  await app.db.updateTable('host').set({ last_heartbeat_at: new Date(Date.now() - 5_000) }).where('id', '=', silent.id).execute()

  const pass = await app.schedules.runOnce('reap-hosts')

  t.same(pass, { dead: 1, containers: 2 })
  t.equal((await hostRow(app, silent.id)).status, 'dead')
  t.equal((await hostRow(app, fresh.id)).status, 'active', 'a host that beat recently stays active')
  t.equal((await hostRow(app, sameIpHost.id)).status, 'active')

  const containers = await app.db.selectFrom('container').selectAll()
    .where('id', 'in', [region.held.id, region.warm.id, region.elsewhere.id, sameIpOtherRegion.id]).execute()
  const byId = new Map(containers.map((c) => [c.id, c]))
  for (const id of [region.held.id, region.warm.id]) {
    t.equal(byId.get(id)!.state, 'failed', 'its containers fail')
    t.match(byId.get(id)!.failure_reason, /heartbeat/, 'with a reason')
    t.equal(byId.get(id)!.client_connected, false)
  }
  t.equal(byId.get(region.elsewhere.id)!.state, 'available', 'a container on another host is untouched')
  t.equal(byId.get(sameIpOtherRegion.id)!.state, 'available', 'the same address in another region is untouched')

  const events = await app.db.selectFrom('container_event').selectAll().where('to_state', '=', 'failed').orderBy('from_state').execute()
  t.match(events, [
    { container_id: region.warm.id, from_state: 'available', to_state: 'failed', reason: new RegExp(silent.id) },
    { container_id: region.held.id, from_state: 'in_use', to_state: 'failed', reason: new RegExp(silent.id) }
  ])
  t.equal(events.length, 2)
  const open = await app.db.selectFrom('container_session').selectAll().where('container_id', '=', region.held.id).where('logoff_at', 'is', null).execute()
  t.same(open, [], 'the open session is closed')

  // The user sees the failure through the API.
  const mine = await app.inject({ method: 'GET', url: `/v1/containers/${region.held.id}`, headers: region.user.headers })
  t.equal(mine.json().state, 'failed')

  t.same(await app.schedules.runOnce('reap-hosts'), { dead: 0, containers: 0 }, 'a second pass has nothing to do')
})

t.test('hostHeartbeat › faults › a draining host that goes silent is reaped too; a dead one is left alone', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_DEAD_AFTER_MS: '1000' })
  const region = await given(app).region()
  const draining = await givenHost(app, region.code, '198.51.100.40')
  const dead = await givenHost(app, region.code, '198.51.100.41')
  t.equal((await beat(app, draining.id, { dying: true }, { 'x-host-secret': draining.secret })).statusCode, 204)
  const past = new Date(Date.now() - 60_000)
  await app.db.updateTable('host').set({ last_heartbeat_at: past }).where('id', '=', draining.id).execute()
  await app.db.updateTable('host').set({ last_heartbeat_at: past, status: 'dead' }).where('id', '=', dead.id).execute()
  const deadBefore = await hostRow(app, dead.id)

  t.same(await app.schedules.runOnce('reap-hosts'), { dead: 1, containers: 0 })
  t.equal((await hostRow(app, draining.id)).status, 'dead')
  t.same(await hostRow(app, dead.id), deadBefore, 'an already dead host is not touched again')
})

t.test('hostHeartbeat › faults › a heartbeat in time keeps a host out of the reaper\'s hands', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_DEAD_AFTER_MS: '1000' })
  const region = await given(app).region()
  const host = await givenHost(app, region.code)
  await app.db.updateTable('host').set({ last_heartbeat_at: new Date(Date.now() - 60_000) }).where('id', '=', host.id).execute()

  t.equal((await beat(app, host.id, { totalMemoryKb: 1 }, { 'x-host-secret': host.secret })).statusCode, 204)

  t.same(await app.schedules.runOnce('reap-hosts'), { dead: 0, containers: 0 })
  t.equal((await hostRow(app, host.id)).status, 'active')
})

t.test('hostHeartbeat › faults › a silent host whose address a live host has taken over does not fail the live host\'s containers', async (t) => {
  // EC2 reuses addresses: the replacement of a terminated host may come up at the same IP before the
  // old host is declared dead. The containers at that address now run on the live host.
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_DEAD_AFTER_MS: '1000' })
  const offer = await given(app).offer()
  const gone = await givenHost(app, offer.region, '198.51.100.7')
  await app.db.updateTable('host').set({ last_heartbeat_at: new Date(Date.now() - 5_000) }).where('id', '=', gone.id).execute()
  const replacement = await givenHost(app, offer.region, '198.51.100.7')
  const onReplacement = await given(app).warmContainer(offer)

  const pass = await app.schedules.runOnce('reap-hosts')

  t.match(pass, { dead: 1 })
  t.equal((await hostRow(app, gone.id)).status, 'dead')
  t.equal((await hostRow(app, replacement.id)).status, 'active')
  const container = await app.db.selectFrom('container').selectAll().where('id', '=', onReplacement.id).executeTakeFirstOrThrow()
  t.equal(container.state, 'available', 'the live host\'s container keeps running')
})

t.test('hostHeartbeat › faults › on ECS, reap-hosts fails the containers placed on a silent host\'s instance; a host that named their address in its handshake fails none of them', async (t) => {
  // Issue 18, item 7: the address came from the handshake's body, so a host could name another's and, by
  // going silent, have the reaper fail the containers there. A host's containers are now the ones ECS
  // placed on its instance (what its identity document authenticates); its address is the document's.
  const model: EcsModel = ecsModel()
  t.teardown(() => model.restore())
  const aws = identityAuthority('Amazon Web Services LLC (test)')
  const app = await build(t, {
    ...awsSettings, CONTAINER_POLL_MS: '20', CONTAINER_POLL_BUDGET_MS: '200', AWS_IDENTITY_CERT: aws.certificate
  })
  const offer = await given(app).offer()
  const cluster = await app.db.selectFrom('cluster').select('name').where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  model.addCluster(cluster.name)
  const user = await given(app).signedIn()
  const assigned = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  t.equal(assigned.statusCode, 202, 'the pool is empty: the container starts on ECS')
  const containerId = assigned.json().container.id as string
  app.queue.startWorker(2)
  const container = () => app.db.selectFrom('container').selectAll().where('id', '=', containerId).executeTakeFirstOrThrow()
  t.ok(await until(async () => (await container()).host_ip !== null, 60_000), 'the task runs')
  const task = model.tasksOf(containerId)[0]!
  const secret = model.environmentOf(task).FRACTAL_CONTAINER_SECRET!
  t.equal((await app.inject({ method: 'POST', url: `/v1/containers/${containerId}/ping`, payload: { available: false }, headers: { 'x-container-secret': secret } })).statusCode, 204)
  t.ok(await until(async () => (await container()).state === 'in_use', 60_000), 'in use')
  t.match(await container(), { host_ip: task.instance.publicIp, host_instance_id: task.instance.ec2InstanceId }, 'where it runs: the address clients reach, and the instance')

  const handshake = async (payload: object) => {
    const res = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload })
    t.equal(res.statusCode, 201, res.body)
    return res.json() as { hostId: string }
  }
  const real = await handshake(signedIdentity({ instanceId: task.instance.ec2InstanceId, region: offer.region, privateIp: task.instance.privateIp }, aws.privateKey))
  const impostor = await handshake({ ...signedIdentity({ instanceId: instanceId(), region: offer.region, privateIp: '10.0.99.99' }, aws.privateKey), ip: task.instance.publicIp })
  t.equal((await hostRow(app, real.hostId)).ip, task.instance.privateIp, 'the document\'s address')
  t.equal((await hostRow(app, impostor.hostId)).ip, '10.0.99.99', 'not the one the body named')
  const silence = (id: string) => app.db.updateTable('host').set({ last_heartbeat_at: longAgo() }).where('id', '=', id).execute()

  await silence(impostor.hostId)
  t.same(await app.schedules.runOnce('reap-hosts'), { dead: 1, containers: 0 }, 'the impostor dies alone')
  t.equal((await container()).state, 'in_use', 'the container runs on')

  await silence(real.hostId)
  t.same(await app.schedules.runOnce('reap-hosts'), { dead: 1, containers: 1 }, 'its own host\'s death fails it')
  t.match(await container(), { state: 'failed', failure_reason: /heartbeat/ })
})
