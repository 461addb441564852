import { createSign, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>

const bootstrapSecret = 'a-long-shared-bootstrap-secret'
const instanceId = () => `i-${randomBytes(8).toString('hex')}`
const handshake = (app: App, payload: object, remoteAddress?: string) =>
  app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload, ...(remoteAddress ? { remoteAddress } : {}) })
const heartbeat = (app: App, hostId: string, secret: string, payload: object = {}) =>
  app.inject({ method: 'POST', url: `/v1/hosts/${hostId}/heartbeats`, payload, headers: { 'x-host-secret': secret } })
const hostRows = (app: App) => app.db.selectFrom('host').selectAll().execute()

// A self-signed X.509 certificate standing in for AWS's: node:crypto reads certificates but does not make
// them, so the few DER structures a certificate needs are written here and its TBS part signed for real.
function der (tag: number, ...parts: Buffer[]): Buffer {
  const body = Buffer.concat(parts)
  const n = body.length
  const length = n < 0x80 ? [n] : n < 0x100 ? [0x81, n] : [0x82, n >> 8, n & 0xff]
  return Buffer.concat([Buffer.from([tag, ...length]), body])
}
const sequence = (...parts: Buffer[]) => der(0x30, ...parts)
const oid = (hex: string) => der(0x06, Buffer.from(hex, 'hex'))
const sha256WithRsa = sequence(oid('2a864886f70d01010b'), der(0x05))
const commonName = (cn: string) => sequence(der(0x31, sequence(oid('550403'), der(0x0c, Buffer.from(cn)))))
const utcTime = (d: Date) => der(0x17, Buffer.from(`${d.toISOString().replace(/[-:T]/g, '').slice(2, 14)}Z`))

function identityAuthority (cn: string): { certificate: string, privateKey: KeyObject } {
  const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 })
  const now = Date.now()
  const tbs = sequence(
    der(0xa0, der(0x02, Buffer.from([2]))), // v3
    der(0x02, Buffer.from(randomBytes(8).map((b, i) => (i === 0 ? b & 0x7f : b)))), // a positive serial
    sha256WithRsa,
    commonName(cn),
    sequence(utcTime(new Date(now - 3_600_000)), utcTime(new Date(now + 86_400_000))),
    commonName(cn),
    publicKey.export({ type: 'spki', format: 'der' }))
  const certificate = sequence(tbs, sha256WithRsa, der(0x03, Buffer.from([0]), sign('sha256', tbs, privateKey)))
  const pem = `-----BEGIN CERTIFICATE-----\n${certificate.toString('base64').match(/.{1,64}/g)!.join('\n')}\n-----END CERTIFICATE-----\n`
  return { certificate: pem, privateKey }
}

// Two authorities per process: "AWS" (configured) and an impostor.
const aws = identityAuthority('Amazon Web Services LLC (test)')
const impostor = identityAuthority('Not Amazon')
const signDocument = (document: string, key: KeyObject) => createSign('RSA-SHA256').update(document).sign(key, 'base64')
const identityDocument = (fields: { instanceId: string, region: string }) => JSON.stringify({
  accountId: '000000000000',
  architecture: 'x86_64',
  availabilityZone: `${fields.region.replace(/-1$/, '-1a')}`,
  imageId: 'ami-0abcdef1234567890',
  instanceId: fields.instanceId,
  instanceType: 'g4dn.xlarge',
  pendingTime: new Date().toISOString(),
  privateIp: '10.0.12.34',
  region: fields.region,
  version: '2017-09-30'
}, null, 2)

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
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
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
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()

  const res = await handshake(app, { InstanceID: id, region: region.code, bootstrapSecret })

  t.equal(res.statusCode, 201)
  const row = await app.db.selectFrom('host').selectAll().where('id', '=', res.json().hostId).executeTakeFirstOrThrow()
  t.equal(row.instance_id, id)
})

t.test('hostHandshake › valid › a second handshake of the same instance is 200 with a new secret: the old one stops working', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()
  const first = await handshake(app, { instanceId: id, region: region.code, ip: '198.51.100.20', bootstrapSecret })
  t.equal(first.statusCode, 201)

  const second = await handshake(app, { InstanceID: id, region: region.code, ip: '198.51.100.21', bootstrapSecret })

  t.equal(second.statusCode, 200)
  t.equal(second.json().hostId, first.json().hostId, 'the same host')
  t.not(second.json().secret, first.json().secret, 'a new secret')
  const rows = await hostRows(app)
  t.equal(rows.length, 1, 'no second row')
  t.equal(rows[0]!.ip, '198.51.100.21')
  t.notMatch(JSON.stringify(rows[0]), second.json().secret)

  const old = await heartbeat(app, first.json().hostId, first.json().secret)
  t.equal(old.statusCode, 401, 'the old secret is rotated out')
  t.equal(old.json().code, 'unauthorized')
  t.equal((await heartbeat(app, second.json().hostId, second.json().secret)).statusCode, 204, 'the new one works')
})

t.test('hostHandshake › valid › a dead host that shakes hands again is active', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
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
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate })
  const region = await given(app).region()
  const other = await given(app).region()
  const id = instanceId()
  const document = identityDocument({ instanceId: id, region: region.code })

  const res = await handshake(app, {
    identityDocument: document,
    identitySignature: signDocument(document, aws.privateKey),
    // What the body claims besides the document does not override it.
    instanceId: instanceId(),
    region: other.code,
    ami: 'ami-11111111',
    ip: '198.51.100.30'
  })

  t.equal(res.statusCode, 201)
  const rows = await hostRows(app)
  t.equal(rows.length, 1)
  t.match(rows[0], {
    id: res.json().hostId,
    instance_id: id,
    region_code: region.code,
    ami: 'ami-0abcdef1234567890',
    instance_type: 'g4dn.xlarge',
    ip: '198.51.100.30',
    status: 'active'
  })
  t.equal((await heartbeat(app, res.json().hostId, res.json().secret)).statusCode, 204)

  // The same instance again: rotated, 200.
  const again = await handshake(app, { identityDocument: document, identitySignature: signDocument(document, aws.privateKey) })
  t.equal(again.statusCode, 200)
  t.equal(again.json().hostId, res.json().hostId)
})

t.test('hostHandshake › insufficient permissions › a tampered identity document, or one signed by another key, is 401 and nothing is stored', async (t) => {
  const app = await build(t, { AWS_IDENTITY_CERT: aws.certificate })
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
    ['a signed document without an instance id', { identityDocument: `{"region":"${region.code}"}`, identitySignature: signDocument(`{"region":"${region.code}"}`, aws.privateKey) }]
  ]
  for (const [label, payload] of cases) {
    const res = await handshake(app, payload)
    t.equal(res.statusCode, 401, label)
    t.match(res.headers['content-type'], /application\/problem\+json/, label)
    t.equal(res.json().code, 'unauthorized', label)
  }
  t.same(await hostRows(app), [], 'nothing stored')
})

t.test('hostHandshake › insufficient permissions › without AWS_IDENTITY_CERT an identity document is 401', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const document = identityDocument({ instanceId: instanceId(), region: region.code })

  const res = await handshake(app, { identityDocument: document, identitySignature: signDocument(document, aws.privateKey) })

  t.equal(res.statusCode, 401)
  t.equal(res.json().code, 'unauthorized')
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › insufficient permissions › a wrong or missing bootstrap secret is 401 problem+json and nothing is stored', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()

  for (const secret of ['a-long-shared-bootstrap-secreT', `${bootstrapSecret}x`, 'another-secret-entirely', undefined]) {
    const res = await handshake(app, { instanceId: instanceId(), region: region.code, ...(secret ? { bootstrapSecret: secret } : {}) })
    t.equal(res.statusCode, 401, String(secret))
    t.match(res.headers['content-type'], /application\/problem\+json/)
    t.match(res.json(), { status: 401, code: 'unauthorized' })
    t.notMatch(res.body, bootstrapSecret, 'the expected secret is not echoed')
  }
  t.same(await hostRows(app), [], 'nothing stored')
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
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
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
  t.same(await hostRows(app), [], 'nothing stored')
})

t.test('hostHandshake › invalid input › with a bootstrap secret, a missing instance id or region is 400 naming it', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()

  const noInstance = await handshake(app, { region: region.code, bootstrapSecret })
  t.equal(noInstance.statusCode, 400)
  t.match(noInstance.json(), { code: 'validation_failed', errors: [{ field: '/body/instanceId' }] })

  const noRegion = await handshake(app, { instanceId: instanceId(), bootstrapSecret })
  t.equal(noRegion.statusCode, 400)
  t.match(noRegion.json(), { code: 'validation_failed', errors: [{ field: '/body/region' }] })

  const noBody = await app.inject({ method: 'POST', url: '/v1/hosts/handshake' })
  t.equal(noBody.statusCode, 400, 'the body is required')
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › invalid input › an unknown region is 422 naming /body/region', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret, AWS_IDENTITY_CERT: aws.certificate })

  const res = await handshake(app, { instanceId: instanceId(), region: 'zz-nowhere-1', bootstrapSecret })
  t.equal(res.statusCode, 422)
  t.match(res.headers['content-type'], /application\/problem\+json/)
  t.match(res.json(), { code: 'unprocessable', errors: [{ field: '/body/region' }] })

  // The region a signed document names must exist too.
  const document = identityDocument({ instanceId: instanceId(), region: 'zz-nowhere-1' })
  const signed = await handshake(app, { identityDocument: document, identitySignature: signDocument(document, aws.privateKey) })
  t.equal(signed.statusCode, 422)
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › invalid input › a body that is not JSON is 415', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
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
  t.same(await hostRows(app), [])
})

t.test('hostHandshake › valid › two handshakes of one new instance at once: one row, one 201 and one 200, one working secret', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
  const region = await given(app).region()
  const id = instanceId()

  const answers = await Promise.all([1, 2].map(() => handshake(app, { instanceId: id, region: region.code, bootstrapSecret })))

  t.same(answers.map((r) => r.statusCode).sort(), [200, 201])
  const [a, b] = answers.map((r) => r.json()) as [{ hostId: string, secret: string }, { hostId: string, secret: string }]
  t.equal(a.hostId, b.hostId)
  t.equal((await hostRows(app)).length, 1)
  const beats = [(await heartbeat(app, a.hostId, a.secret)).statusCode, (await heartbeat(app, b.hostId, b.secret)).statusCode]
  t.same(beats.sort(), [204, 401], 'the secret written last is the only one that works')
})

t.test('hostHandshake › insufficient permissions › guessing the bootstrap secret meets the rate limit of 60 a minute per address', async (t) => {
  const app = await build(t, { HOST_BOOTSTRAP_SECRET: bootstrapSecret })
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
  t.same(await hostRows(app), [], 'nothing stored')

  const honest = await handshake(app, { instanceId: instanceId(), region: region.code, bootstrapSecret }, '203.0.113.67')
  t.equal(honest.statusCode, 201, 'another address is not limited')
})
