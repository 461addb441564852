import { randomBytes, X509Certificate } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { identityAuthority, identityDocument, signDocument, signedIdentity } from '../../helpers/identity-document.js'

type App = Awaited<ReturnType<typeof build>>

const bootstrapSecret = 'a-long-shared-bootstrap-secret'
const instanceId = () => `i-${randomBytes(8).toString('hex')}`
/** A handshake from `remoteAddress`, carrying `currentSecret` in X-Host-Secret when given. */
const handshake = (app: App, payload: object, remoteAddress?: string, currentSecret?: string) =>
  app.inject({
    method: 'POST',
    url: '/v1/hosts/handshake',
    payload,
    ...(remoteAddress ? { remoteAddress } : {}),
    ...(currentSecret ? { headers: { 'x-host-secret': currentSecret } } : {})
  })
const heartbeat = (app: App, hostId: string, secret: string, payload: object = {}) =>
  app.inject({ method: 'POST', url: `/v1/hosts/${hostId}/heartbeats`, payload, headers: { 'x-host-secret': secret } })
const hostRows = (app: App) => app.db.selectFrom('host').selectAll().execute()
/** The file's tests share an app and run one at a time: the host rows a test made are the ones added since it began. */
async function hostsAddedFrom (app: App) {
  const before = new Set((await app.db.selectFrom('host').select('id').execute()).map((r) => r.id))
  return async () => (await hostRows(app)).filter((r) => !before.has(r.id))
}
const hostRow = (app: App, id: string) => app.db.selectFrom('host').selectAll().where('id', '=', id).executeTakeFirstOrThrow()

// Two authorities per process: "AWS" (configured) and an impostor.
const aws = identityAuthority('Amazon Web Services LLC (test)')
const impostor = identityAuthority('Not Amazon')
const signed = (fields: Parameters<typeof signedIdentity>[0]) => signedIdentity(fields, aws.privateKey)

/** A clock the test moves (BuildOptions.now): starts at the real time, moves only when told. */
function fakeClock () {
  let ms = Date.now()
  return { now: () => ms, advance: (by: number) => { ms += by }, at: (date: Date) => { ms = date.getTime() } }
}

t.test('hostHandshake › valid › a bootstrap secret registers the host: 201 with its id, secret and heartbeat interval', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, HOST_HEARTBEAT_INTERVAL_S: '45' })
  const offer = await given(app).offer()
  const cluster = await app.db.selectFrom('cluster').select(['id', 'name']).where('region_code', '=', offer.region).executeTakeFirstOrThrow()
  const id = instanceId()

  const res = await handshake(app, {
    instanceId: id,
    region: offer.region,
    ip: '198.51.100.20',
    ami: 'ami-0abcdef1234567890',
    instanceType: 'g4dn.xlarge',
    clusterName: cluster.name,
    bootstrapSecret
  })

  t.equal(res.statusCode, 201)
  const body = res.json()
  t.same(Object.keys(body).sort(), ['heartbeatIntervalSeconds', 'hostId', 'secret'])
  t.equal(body.heartbeatIntervalSeconds, 45)
  t.match(body.hostId, /^[0-9a-f-]{36}$/)
  t.ok(body.secret.length >= 32, 'a long random secret')

  const rows = await hostRows(app)
  t.equal(rows.length, 1)
  const row = rows[0]!
  t.match(row, {
    id: body.hostId,
    instance_id: id,
    region_code: offer.region,
    cluster_id: cluster.id,
    ip: '198.51.100.20',
    ami: 'ami-0abcdef1234567890',
    instance_type: 'g4dn.xlarge',
    status: 'active'
  })
  t.ok(row.last_heartbeat_at, 'the handshake counts as a first sign of life')
  t.ok(row.secret_hash.length > 0)
  t.not(row.secret_hash, body.secret, 'stored hashed')
  t.notMatch(JSON.stringify(row), body.secret, 'the secret appears nowhere in the row')

  t.equal((await heartbeat(app, body.hostId, body.secret)).statusCode, 204, 'the secret works')
})

t.test('hostHandshake › valid › the address defaults to the caller\'s; a cluster of another region is not linked', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const here = await given(app).offer()
  const elsewhere = await given(app).offer()
  const otherCluster = await app.db.selectFrom('cluster').select('name').where('region_code', '=', elsewhere.region).executeTakeFirstOrThrow()

  const res = await handshake(app, { instanceId: instanceId(), region: here.region, clusterName: otherCluster.name, bootstrapSecret }, '203.0.113.9')

  t.equal(res.statusCode, 201)
  const row = await app.db.selectFrom('host').selectAll().where('id', '=', res.json().hostId).executeTakeFirstOrThrow()
  t.equal(row.ip, '203.0.113.9')
  t.equal(row.cluster_id, null)
  t.equal(row.ami, null)
})

t.test('hostHandshake › valid › the original agent\'s InstanceID alias works', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()

  const res = await handshake(app, { InstanceID: id, region: region.code, bootstrapSecret })

  t.equal(res.statusCode, 201)
  const row = await app.db.selectFrom('host').selectAll().where('id', '=', res.json().hostId).executeTakeFirstOrThrow()
  t.equal(row.instance_id, id)
})

t.test('hostHandshake › valid › a re-handshake with the host\'s current secret in X-Host-Secret is 200 with a new secret: the old one stops working', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const id = instanceId()
  const first = await handshake(app, { instanceId: id, region: region.code, ip: '198.51.100.20', bootstrapSecret })
  t.equal(first.statusCode, 201)

  const second = await handshake(app, { InstanceID: id, region: region.code, ip: '198.51.100.21', bootstrapSecret }, undefined, first.json().secret)

  t.equal(second.statusCode, 200)
  t.equal(second.json().hostId, first.json().hostId, 'the same host')
  t.not(second.json().secret, first.json().secret, 'a new secret')
  const rows = await added()
  t.equal(rows.length, 1, 'no second row')
  t.equal(rows[0]!.ip, '198.51.100.21')
  t.notMatch(JSON.stringify(rows[0]), second.json().secret)

  const old = await heartbeat(app, first.json().hostId, first.json().secret)
  t.equal(old.statusCode, 401, 'the old secret is rotated out')
  t.equal(old.json().code, 'unauthorized')
  t.equal((await heartbeat(app, second.json().hostId, second.json().secret)).statusCode, 204, 'the new one works')

  const withOld = await handshake(app, { instanceId: id, region: region.code, bootstrapSecret }, undefined, first.json().secret)
  t.equal(withOld.statusCode, 401, 'the old secret rotates nothing any more')
  t.equal(withOld.json().code, 'unauthorized')
  t.equal((await heartbeat(app, second.json().hostId, second.json().secret)).statusCode, 204, 'and the current one keeps working')
})

t.test('hostHandshake › valid › a dead host that shakes hands again is active', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()
  const first = await handshake(app, { instanceId: id, region: region.code, bootstrapSecret })
  const longAgo = new Date(Date.now() - 3_600_000)
  await app.db.updateTable('host').set({ status: 'dead', last_heartbeat_at: longAgo }).where('id', '=', first.json().hostId).execute()

  const again = await handshake(app, { instanceId: id, region: region.code, bootstrapSecret })

  t.equal(again.statusCode, 200)
  const row = await app.db.selectFrom('host').selectAll().where('id', '=', first.json().hostId).executeTakeFirstOrThrow()
  t.equal(row.status, 'active')
  t.ok(row.last_heartbeat_at! > longAgo, 'its last sign of life is now')
})

t.test('hostHandshake › valid › a signed identity document: its instance, region, AMI and instance type are the ones stored', async (t) => {
  const cert = new X509Certificate(aws.certificate)
  t.ok(cert.verify(cert.publicKey) && cert.checkPrivateKey(aws.privateKey), 'AWS_IDENTITY_CERT is a real self-signed certificate')
  const app = await fileApp({ AWS_IDENTITY_CERT: aws.certificate })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const other = await given(app).region()
  const id = instanceId()
  const document = identityDocument({ instanceId: id, region: region.code })

  const res = await handshake(app, {
    identityDocument: document,
    identitySignature: signDocument(document, aws.privateKey),
    // What the body claims besides the document does not override it, whichever field it is.
    instanceId: instanceId(),
    InstanceID: instanceId(),
    region: other.code,
    ami: 'ami-11111111',
    instanceType: 'p5.48xlarge',
    ip: '198.51.100.30'
  }, '198.51.100.31')

  t.equal(res.statusCode, 201)
  const rows = await added()
  t.equal(rows.length, 1)
  t.match(rows[0], {
    id: res.json().hostId,
    instance_id: id,
    region_code: region.code,
    ami: 'ami-0abcdef1234567890',
    instance_type: 'g4dn.xlarge',
    ip: '10.0.12.34',
    status: 'active'
  })
  t.ok(rows[0]!.launched_at, 'the launch the document was accepted for is recorded')
  t.equal(rows[0]!.launched_at!.toISOString(), JSON.parse(document).pendingTime.replace('Z', '.000Z'))
  t.equal((await heartbeat(app, res.json().hostId, res.json().secret)).statusCode, 204)
})

t.test('hostHandshake › insufficient permissions › a tampered identity document, or one signed by another key, is 401 and nothing is stored', async (t) => {
  const app = await fileApp({ AWS_IDENTITY_CERT: aws.certificate })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const document = identityDocument({ instanceId: instanceId(), region: region.code })
  const signature = signDocument(document, aws.privateKey)
  const tampered = document.replace('g4dn.xlarge', 'p5.48xlarge')
  const otherInstance = identityDocument({ instanceId: instanceId(), region: region.code })

  const cases: Array<[string, object]> = [
    ['tampered after signing', { identityDocument: tampered, identitySignature: signature }],
    ['a signature of another document', { identityDocument: otherInstance, identitySignature: signature }],
    ['signed by another key', { identityDocument: document, identitySignature: signDocument(document, impostor.privateKey) }],
    ['a signature that is not base64 RSA', { identityDocument: document, identitySignature: 'A'.repeat(64) }],
    ['a document without its signature', { identityDocument: document }],
    ['a signature without its document', { identitySignature: signature, instanceId: instanceId(), region: region.code }],
    ['a signed document that is not JSON', { identityDocument: 'not json', identitySignature: signDocument('not json', aws.privateKey) }],
    ['a signed document without an instance id', { identityDocument: `{"region":"${region.code}"}`, identitySignature: signDocument(`{"region":"${region.code}"}`, aws.privateKey) }],
    ...(['pendingTime', 'privateIp'] as const).flatMap((field): Array<[string, object]> => {
      const fields = JSON.parse(identityDocument({ instanceId: instanceId(), region: region.code }))
      const without = JSON.stringify({ ...fields, [field]: undefined })
      const garbled = JSON.stringify({ ...fields, [field]: 'not-a-value' })
      return [
        [`a signed document without ${field}`, { identityDocument: without, identitySignature: signDocument(without, aws.privateKey) }],
        [`a signed document whose ${field} is not one`, { identityDocument: garbled, identitySignature: signDocument(garbled, aws.privateKey) }]
      ]
    })
  ]
  for (const [label, payload] of cases) {
    const res = await handshake(app, payload)
    t.equal(res.statusCode, 401, label)
    t.match(res.headers['content-type'], /application\/problem\+json/, label)
    t.equal(res.json().code, 'unauthorized', label)
  }
  t.same(await added(), [], 'nothing stored')
})

t.test('hostHandshake › insufficient permissions › without AWS_IDENTITY_CERT an identity document is 401', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const document = identityDocument({ instanceId: instanceId(), region: region.code })

  const res = await handshake(app, { identityDocument: document, identitySignature: signDocument(document, aws.privateKey) })

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.same(await added(), [])
})

t.test('hostHandshake › insufficient permissions › a wrong or missing bootstrap secret is 401 problem+json and nothing is stored', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()

  for (const secret of ['a-long-shared-bootstrap-secreT', `${bootstrapSecret}x`, 'another-secret-entirely', undefined]) {
    const res = await handshake(app, { instanceId: instanceId(), region: region.code, ...(secret ? { bootstrapSecret: secret } : {}) })
    t.equal(res.statusCode, 401, String(secret))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { status: 401, code: 'unauthorized' })
    t.notMatch(res.body, bootstrapSecret, 'the expected secret is not echoed')
  }
  t.same(await added(), [], 'nothing stored')
})

t.test('hostHandshake › insufficient permissions › without HOST_BOOTSTRAP_SECRET configured no bootstrap secret is accepted', async (t) => {
  const app = await build(t)
  const region = await given(app).region()

  const res = await handshake(app, { instanceId: instanceId(), region: region.code, bootstrapSecret })

  t.equal(res.statusCode, 401)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal(res.json().code, 'unauthorized')
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › invalid input › a malformed instance id, AMI, address or an unknown field is 400 naming it; nothing is stored', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const good = { instanceId: instanceId(), region: region.code, bootstrapSecret }

  const cases: Array<[object, string]> = [
    [{ ...good, instanceId: 'i-XYZ' }, 'instanceId'],
    [{ ...good, instanceId: 'vm-0123456789abcdef0' }, 'instanceId'],
    [{ ...good, InstanceID: 'i-12' }, 'InstanceID'],
    [{ ...good, ami: 'not-an-ami' }, 'ami'],
    [{ ...good, ip: '999.1.1.1' }, 'ip'],
    [{ ...good, region: 'Not A Region' }, 'region'],
    [{ ...good, bootstrapSecret: 'short' }, 'bootstrapSecret'],
    [{ ...good, hostname: 'gpu-1' }, 'hostname']
  ]
  for (const [payload, field] of cases) {
    const res = await handshake(app, payload)
    t.equal(res.statusCode, 400, field)
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.equal(res.json().code, 'validation_failed', field)
    t.match(JSON.stringify(res.json().errors), field, `names ${field}`)
  }
  t.same(await added(), [], 'nothing stored')
})

t.test('hostHandshake › invalid input › with a bootstrap secret, a missing instance id or region is 400 naming it', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()

  const noInstance = await handshake(app, { region: region.code, bootstrapSecret })
  t.equal(noInstance.statusCode, 400)
  t.match(noInstance.json(), { code: 'validation_failed', errors: [{ field: '/body/instanceId' }] })

  const noRegion = await handshake(app, { instanceId: instanceId(), bootstrapSecret })
  t.equal(noRegion.statusCode, 400)
  t.match(noRegion.json(), { code: 'validation_failed', errors: [{ field: '/body/region' }] })

  const noBody = await app.inject({ method: 'POST', url: '/v1/hosts/handshake' })
  t.equal(noBody.statusCode, 400, 'the body is required')
  t.same(await added(), [])
})

t.test('hostHandshake › invalid input › an unknown region is 422 naming /body/region', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, AWS_IDENTITY_CERT: aws.certificate })

  const res = await handshake(app, { instanceId: instanceId(), region: 'zz-nowhere-1', bootstrapSecret })
  t.equal(res.statusCode, 422)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { code: 'unprocessable', errors: [{ field: '/body/region' }] })

  // The region a signed document names must exist too.
  const document = identityDocument({ instanceId: instanceId(), region: 'zz-nowhere-1' })
  const withDocument = await handshake(app, { identityDocument: document, identitySignature: signDocument(document, aws.privateKey) })
  t.equal(withDocument.statusCode, 422)
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › invalid input › a body that is not JSON is 415', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()

  const res = await app.inject({
    method: 'POST',
    url: '/v1/hosts/handshake',
    payload: `instanceId=${instanceId()}&region=${region.code}&bootstrapSecret=${bootstrapSecret}`,
    headers: { 'content-type': 'application/x-www-form-urlencoded' }
  })
  t.equal(res.statusCode, 415)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.equal(res.json().code, 'unsupported_media_type')

  const text = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: 'hello', headers: { 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415)
  t.same(await added(), [])
})

t.test('hostHandshake › valid › two bootstrap handshakes of one new instance at once: one row, one 201 and one 409, the 201\'s secret works', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const id = instanceId()

  const answers = await Promise.all([1, 2].map(() => handshake(app, { instanceId: id, region: region.code, bootstrapSecret })))

  t.same(answers.map((r) => r.statusCode).sort(), [201, 409])
  const winner = answers.find((r) => r.statusCode === 201)!.json() as { hostId: string, secret: string }
  const loser = answers.find((r) => r.statusCode === 409)!
  t.match(loser.headers['content-type'], /application\/problem\+json/)
  t.match(loser.json(), { code: 'conflict', detail: /is live/ })
  t.equal((await added()).length, 1)
  t.equal((await heartbeat(app, winner.hostId, winner.secret)).statusCode, 204, 'the one secret handed out works')
})

t.test('hostHandshake › insufficient permissions › guessing the bootstrap secret meets the rate limit of 60 a minute per address', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const attacker = '203.0.113.66'

  for (let i = 0; i < 60; i++) {
    const res = await handshake(app, { instanceId: instanceId(), region: region.code, bootstrapSecret: `guess-number-${String(i).padStart(4, '0')}` }, attacker)
    if (res.statusCode !== 401) t.fail(`guess ${i}: ${res.statusCode}`)
  }
  const limited = await handshake(app, { instanceId: instanceId(), region: region.code, bootstrapSecret }, attacker)
  t.equal(limited.statusCode, 429, 'even the right secret waits')
  t.match(limited.headers['content-type'], /application\/problem\+json/)
  t.equal(limited.json().code, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0, 'Retry-After says how long')
  t.same(await added(), [], 'nothing stored')

  const honest = await handshake(app, { instanceId: instanceId(), region: region.code, bootstrapSecret }, '203.0.113.67')
  t.equal(honest.statusCode, 201, 'another address is not limited')
})

// Issue 18, item 7: a second handshake with the same signed identity document rotated the real host's secret
// (its heartbeats got 401), and the address stored was the body's `ip`, not the document's `privateIp`.

t.test('hostHandshake › insufficient permissions › replaying a signed identity document is 401: the real host keeps its secret and its heartbeats work', async (t) => {
  const app = await fileApp({ AWS_IDENTITY_CERT: aws.certificate })
  const region = await given(app).region()
  const document = signed({ instanceId: instanceId(), region: region.code, privateIp: '10.0.0.5' })
  const real = await handshake(app, document, '10.0.0.5')
  t.equal(real.statusCode, 201)
  const before = await hostRow(app, real.json().hostId)

  const replay = await handshake(app, { ...document, ip: '192.0.2.66' }, '192.0.2.66')

  t.equal(replay.statusCode, 401)
  t.match(replay.headers['content-type'], /application\/problem\+json/)
  t.match(replay.json(), { code: 'unauthorized', detail: /was used already.*X-Host-Secret/ })
  t.notMatch(replay.body, /"secret"/, 'no secret handed out')
  t.same(await hostRow(app, real.json().hostId), before, 'the row is untouched: its secret, address and launch')
  t.equal((await heartbeat(app, real.json().hostId, real.json().secret)).statusCode, 204, 'the real host\'s heartbeats keep working')

  // Dead or alive: a launch's document is good for one handshake.
  await app.db.updateTable('host').set({ status: 'dead' }).where('id', '=', real.json().hostId).execute()
  const afterDeath = await handshake(app, document, '192.0.2.66')
  t.equal(afterDeath.statusCode, 401, 'still refused once the host is dead')
  t.equal((await hostRow(app, real.json().hostId)).secret_hash, before.secret_hash)
})

t.test('hostHandshake › insufficient permissions › an identity document past HOST_IDENTITY_MAX_AGE_S (15 minutes) after its pendingTime is 401 and nothing is stored', async (t) => {
  const clock = fakeClock()
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate }, { clock })
  const region = await given(app).region()
  const launchedAt = new Date(Math.floor(clock.now() / 1000) * 1000)
  const lastMoment = signed({ instanceId: instanceId(), region: region.code, pendingTime: launchedAt })
  const late = signed({ instanceId: instanceId(), region: region.code, pendingTime: launchedAt })

  clock.at(new Date(launchedAt.getTime() + 15 * 60_000))
  t.equal((await handshake(app, lastMoment)).statusCode, 201, '15 minutes after the launch: still accepted')

  clock.advance(1_000)
  const res = await handshake(app, late)

  t.equal(res.statusCode, 401)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { code: 'unauthorized', detail: /stale/ })
  t.same((await hostRows(app)).map((r) => r.instance_id), [JSON.parse(lastMoment.identityDocument).instanceId], 'the late one is not stored')
})

t.test('hostHandshake › insufficient permissions › the window is HOST_IDENTITY_MAX_AGE_S', async (t) => {
  const clock = fakeClock()
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate, HOST_IDENTITY_MAX_AGE_S: '60' }, { clock })
  const region = await given(app).region()
  const at = (secondsAgo: number) => signed({ instanceId: instanceId(), region: region.code, pendingTime: new Date(Math.floor(clock.now() / 1000) * 1000 - secondsAgo * 1000) })

  t.equal((await handshake(app, at(59))).statusCode, 201)
  t.equal((await handshake(app, at(61))).statusCode, 401)
})

t.test('hostHandshake › valid › with an identity document the stored address is its privateIp, not the body\'s ip nor the caller\'s', async (t) => {
  const app = await fileApp({ AWS_IDENTITY_CERT: aws.certificate })
  const region = await given(app).region()

  const v4 = await handshake(app, { ...signed({ instanceId: instanceId(), region: region.code, privateIp: '10.0.0.5' }), ip: '192.0.2.66' }, '192.0.2.66')
  const v6 = await handshake(app, { ...signed({ instanceId: instanceId(), region: region.code, privateIp: 'fd00:ec2::5' }), ip: '192.0.2.66' }, '192.0.2.66')

  t.equal(v4.statusCode, 201)
  t.equal((await hostRow(app, v4.json().hostId)).ip, '10.0.0.5')
  t.equal(v6.statusCode, 201)
  t.equal((await hostRow(app, v6.json().hostId)).ip, 'fd00:ec2::5', 'an IPv6-only instance\'s privateIp is its IPv6 address')
})

t.test('hostHandshake › valid › an agent that restarts re-handshakes with its current secret: 200, a new secret, the old one fails (the document may be old by then)', async (t) => {
  const clock = fakeClock()
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate }, { clock })
  const region = await given(app).region()
  const document = signed({ instanceId: instanceId(), region: region.code, pendingTime: new Date(clock.now()) })
  const first = await handshake(app, document)
  t.equal(first.statusCode, 201)
  clock.advance(24 * 3_600_000)

  const again = await handshake(app, document, undefined, first.json().secret)

  t.equal(again.statusCode, 200)
  t.equal(again.json().hostId, first.json().hostId, 'the same host')
  t.not(again.json().secret, first.json().secret)
  t.equal((await heartbeat(app, first.json().hostId, first.json().secret)).statusCode, 401, 'the old secret fails')
  t.equal((await heartbeat(app, again.json().hostId, again.json().secret)).statusCode, 204, 'the new one works')

  const wrong = await handshake(app, document, undefined, first.json().secret)
  t.equal(wrong.statusCode, 401, 'the old secret rotates nothing')
  t.match(wrong.json(), { code: 'unauthorized', detail: /not valid/ })
  const without = await handshake(app, document)
  t.equal(without.statusCode, 401, 'nor does the document alone')
  t.equal((await heartbeat(app, again.json().hostId, again.json().secret)).statusCode, 204, 'the current secret keeps working')
})

t.test('hostHandshake › valid › concurrent handshakes with one identity document: one 201, the others 401; concurrent rotations with one secret: one 200', async (t) => {
  const app = await fileApp({ AWS_IDENTITY_CERT: aws.certificate })
  const added = await hostsAddedFrom(app)
  const region = await given(app).region()
  const document = signed({ instanceId: instanceId(), region: region.code })

  const answers = await Promise.all(Array.from({ length: 8 }, () => handshake(app, document)))

  t.same(answers.map((r) => r.statusCode).sort(), [201, 401, 401, 401, 401, 401, 401, 401])
  const winner = answers.find((r) => r.statusCode === 201)!.json() as { hostId: string, secret: string }
  t.equal((await added()).length, 1)
  t.equal((await heartbeat(app, winner.hostId, winner.secret)).statusCode, 204, 'the one secret handed out works')

  const rotations = await Promise.all(Array.from({ length: 4 }, () => handshake(app, document, undefined, winner.secret)))

  t.same(rotations.map((r) => r.statusCode).sort(), [200, 401, 401, 401], 'one rotation per current secret')
  const rotated = rotations.find((r) => r.statusCode === 200)!.json() as { hostId: string, secret: string }
  t.equal((await heartbeat(app, rotated.hostId, rotated.secret)).statusCode, 204)
  t.equal((await heartbeat(app, winner.hostId, winner.secret)).statusCode, 401)
})

t.test('hostHandshake › valid › a document of a newer launch (a stopped and started instance) takes over once the host is dead, never while it is live', async (t) => {
  const clock = fakeClock()
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate }, { clock })
  const region = await given(app).region()
  const id = instanceId()
  const launch = new Date(Math.floor(clock.now() / 1000) * 1000)
  const first = signed({ instanceId: id, region: region.code, pendingTime: launch, privateIp: '10.0.0.5' })
  const host = await handshake(app, first)
  t.equal(host.statusCode, 201)
  const relaunch = new Date(launch.getTime() + 5 * 60_000)
  const second = signed({ instanceId: id, region: region.code, pendingTime: relaunch, privateIp: '10.0.0.6' })
  clock.at(new Date(relaunch.getTime() + 30_000))

  const whileLive = await handshake(app, second)
  t.equal(whileLive.statusCode, 409)
  t.match(whileLive.json(), { code: 'conflict', detail: /is live/ })
  t.equal((await heartbeat(app, host.json().hostId, host.json().secret)).statusCode, 204, 'the live secret keeps working')

  await app.db.updateTable('host').set({ status: 'dead' }).where('id', '=', host.json().hostId).execute()
  const onceDead = await handshake(app, second)

  t.equal(onceDead.statusCode, 200)
  t.equal(onceDead.json().hostId, host.json().hostId)
  const row = await hostRow(app, host.json().hostId)
  t.match(row, { status: 'active', ip: '10.0.0.6' })
  t.equal(row.launched_at!.getTime(), relaunch.getTime(), 'the newer launch is the one recorded')
  t.equal((await heartbeat(app, host.json().hostId, onceDead.json().secret)).statusCode, 204)
  t.equal((await handshake(app, first)).statusCode, 401, 'the older launch\'s document is refused')
  t.equal((await handshake(app, second)).statusCode, 401, 'and the newer one is spent')
})

t.test('hostHandshake › insufficient permissions › no handshake replaces a live (active or draining) host\'s secret without it: every way is refused, the row is untouched', async (t) => {
  const clock = fakeClock()
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate, HOST_BOOTSTRAP_SECRET: bootstrapSecret }, { clock })
  const region = await given(app).region()
  const id = instanceId()
  const launch = new Date(Math.floor(clock.now() / 1000) * 1000)
  const document = signed({ instanceId: id, region: region.code, pendingTime: launch })
  const host = (await handshake(app, document)).json() as { hostId: string, secret: string }
  const other = (await handshake(app, signed({ instanceId: instanceId(), region: region.code }))).json() as { hostId: string, secret: string }
  const newer = signed({ instanceId: id, region: region.code, pendingTime: new Date(launch.getTime() + 60_000) })
  clock.advance(90_000)
  const bootstrap = { instanceId: id, region: region.code, ip: '192.0.2.66', bootstrapSecret }

  const attempts: Array<[string, object, string | undefined, number]> = [
    ['the same document again', document, undefined, 401],
    ['the same document naming another address', { ...document, ip: '192.0.2.66' }, undefined, 401],
    ['a document of a newer launch', newer, undefined, 409],
    ['the bootstrap secret', bootstrap, undefined, 409],
    ['the bootstrap secret, InstanceID spelling', { InstanceID: id, region: region.code, bootstrapSecret }, undefined, 409],
    ['the same document with a made-up X-Host-Secret', document, 'x'.repeat(43), 401],
    ['a newer launch with another host\'s secret', newer, other.secret, 401],
    ['the bootstrap secret with another host\'s secret', bootstrap, other.secret, 401]
  ]
  for (const status of ['active', 'draining'] as const) {
    await app.db.updateTable('host').set({ status }).where('id', '=', host.hostId).execute()
    const before = await hostRow(app, host.hostId)
    for (const [label, payload, secret, expected] of attempts) {
      const res = await handshake(app, payload, '192.0.2.66', secret)
      t.equal(res.statusCode, expected, `${status}: ${label}`)
      t.match(res.headers['content-type'], /application\/problem\+json/, `${status}: ${label}`)
    }
    t.same(await hostRow(app, host.hostId), before, `${status}: the row is untouched`)
  }
  t.equal((await heartbeat(app, host.hostId, host.secret)).statusCode, 204, 'the live secret works throughout')
  t.equal((await hostRows(app)).length, 2, 'no row added')
})

t.test('hostHandshake › insufficient permissions › a bootstrap handshake of a live host without its current secret is 409: its secret and address stay', async (t) => {
  const app = await fileApp({ HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()
  const first = await handshake(app, { instanceId: id, region: region.code, ip: '198.51.100.20', bootstrapSecret })
  t.equal(first.statusCode, 201)

  const takeover = await handshake(app, { instanceId: id, region: region.code, ip: '192.0.2.66', bootstrapSecret })

  t.equal(takeover.statusCode, 409)
  t.match(takeover.headers['content-type'], /application\/problem\+json/)
  t.match(takeover.json(), { code: 'conflict', detail: /X-Host-Secret/ })
  t.equal((await hostRow(app, first.json().hostId)).ip, '198.51.100.20')
  t.equal((await heartbeat(app, first.json().hostId, first.json().secret)).statusCode, 204)
})
