// Broken authentication (OWASP API2): every forged or stale access token gets 401, nothing else.
import { createHmac, createSign, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { buildApp } from '../../app.js'
import { build, fileApp, testKeys, twoProcesses } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

/** Two apps on one database and one Redis prefix: two web processes of one deployment. */
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')

function es256 (header: object, claims: object, privateKey: string) {
  const input = `${b64(header)}.${b64(claims)}`
  const signature = createSign('SHA256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  return `${input}.${signature}`
}

t.test('bearer › security › forged and stale tokens are all 401 on getMe', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const now = Math.floor(Date.now() / 1000)
  const claims = { sub: user.account.id, role: 'admin', scopes: ['account', 'users:read'], sid: '00000000-0000-4000-8000-000000000001', iss: app.config.jwt.issuer, aud: app.config.jwt.audience, iat: now, exp: now + 600 }
  const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const hs256 = (() => {
    // The classic confusion attack: HMAC signed with the public key as the secret.
    const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64(claims)}`
    return `${input}.${createHmac('sha256', testKeys.publicKey).update(input).digest('base64url')}`
  })()
  const cases: Record<string, string> = {
    'alg none': `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`,
    'HS256 with the public key': hs256,
    'signed by another key': es256({ alg: 'ES256', typ: 'JWT' }, claims, otherKey.privateKey),
    'wrong issuer': es256({ alg: 'ES256', typ: 'JWT' }, { ...claims, iss: 'https://evil.example' }, testKeys.privateKey),
    'wrong audience': es256({ alg: 'ES256', typ: 'JWT' }, { ...claims, aud: 'someone-else' }, testKeys.privateKey),
    expired: es256({ alg: 'ES256', typ: 'JWT' }, { ...claims, iat: now - 3600, exp: now - 60 }, testKeys.privateKey),
    'no session id': es256({ alg: 'ES256', typ: 'JWT' }, { ...claims, sid: undefined }, testKeys.privateKey),
    'payload swapped under a valid signature': `${user.accessToken.split('.')[0]}.${b64(claims)}.${user.accessToken.split('.')[2]}`
  }
  for (const [name, token] of Object.entries(cases)) {
    const res = await app.inject({ method: 'GET', url: '/v1/users/me', headers: { authorization: `Bearer ${token}` } })
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
  }
  const ok = await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })
  t.equal(ok.statusCode, 200, 'the real token still works')
})

t.test('bearer › security › a token for a signed-out session stops at once, even while cached as verified', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: user.headers })).statusCode, 204)
  const after = await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })
  t.equal(after.statusCode, 401)
  t.match(after.json().detail, /session .* has ended/)
})

t.test('accounts › abuse › one address gets at most 3 reset mails an hour, whoever asks', async (t) => {
  const app = await build(t)
  const user = await given(app).user({ email: 'target@example.test' })
  for (let i = 0; i < 5; i++) {
    const res = await app.inject({ method: 'POST', url: '/v1/accounts/password-reset', payload: { email: user.email }, remoteAddress: `198.51.100.${i}` })
    t.equal(res.statusCode, 202, 'always the same answer')
  }
  // Each request queued the same job; the jobs look the address up and mail (not the mail worker: none runs).
  t.equal((await app.queue.counts('accounts')).waiting, 5)
  app.queue.startWorker(1)
  t.ok(await until(async () => (await app.db.selectFrom('email_token').select('token_hash').where('purpose', '=', 'reset_password').execute()).length === 3 &&
    (await app.queue.counts('accounts')).waiting + (await app.queue.counts('accounts')).active === 0, 60_000))
  const tokens = await app.db.selectFrom('email_token').selectAll().where('purpose', '=', 'reset_password').execute()
  t.equal(tokens.length, 3)
})

t.test('bearer › security › a sign-out in one process is honoured by the others, and by one started later', async (t) => {
  const { a, b, config } = await twoProcesses(t)
  const user = await given(a).signedIn()
  t.equal((await b.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode, 200)

  t.equal((await a.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: user.headers })).statusCode, 204)
  let status = 200
  await until(async () => {
    status = (await b.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode
    return status !== 200
  })
  t.equal(status, 401, 'the other process learnt of it through Redis')

  const c = await buildApp(config, { logger: false })
  t.teardown(() => c.close())
  await c.ready()
  t.equal((await c.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).statusCode, 401, 'a process started later loads the revocations')
})

t.test('getMe › valid › a change made through one process shows at once in another (account cache invalidated)', async (t) => {
  const { a, b } = await twoProcesses(t)
  const user = await given(a).signedIn({ name: 'Before' })
  t.equal((await b.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).json().name, 'Before', 'b caches the account')
  t.equal((await a.inject({ method: 'PATCH', url: '/v1/users/me', payload: { name: 'After' }, headers: user.headers })).statusCode, 200)
  let name = 'Before'
  await until(async () => {
    name = (await b.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })).json().name
    return name !== 'Before'
  })
  t.equal(name, 'After')
})
