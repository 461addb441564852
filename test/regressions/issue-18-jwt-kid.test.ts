// Issue 18.13: a token with a valid signature under an unknown `kid` (or none) was accepted: the kid was never
// read. Now only the current key's kid, and a retired key's (JWT_PREVIOUS_PUBLIC_KEYS) for one token lifetime.
import { createSign, generateKeyPairSync } from 'node:crypto'
import t from 'tap'
import { build, testKeys } from '../helpers/build.js'
import { TestClock } from '../helpers/clock.js'
import { bearer, given } from '../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
const ttl = 60
const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')

function sign (header: object, claims: object, privateKey: string) {
  const input = `${b64(header)}.${b64(claims)}`
  return `${input}.${createSign('SHA256').update(input).sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}

const me = (app: App, token: string) => app.inject({ method: 'GET', url: '/v1/users/me', headers: bearer(token) })

/** The claims of a real session of `app`, re-issued at the app clock's time. */
async function claimsOf (app: App) {
  const user = await given(app).signedIn()
  const claims = JSON.parse(Buffer.from(user.accessToken.split('.')[1]!, 'base64url').toString())
  return (now: number) => ({ ...claims, iat: Math.floor(now / 1000), exp: Math.floor(now / 1000) + ttl })
}

const pair = () => generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })

t.test('bearer › security › a token signed by our key is refused when its kid is unknown or missing', async (t) => {
  const app = await build(t, { ACCESS_TOKEN_TTL: String(ttl) })
  const claims = (await claimsOf(app))(Date.now())
  const kid = app.jwks.keys[0]!.kid
  t.equal((await me(app, sign({ alg: 'ES256', typ: 'JWT', kid }, claims, testKeys.privateKey))).statusCode, 200, 'our kid')
  for (const [what, header] of Object.entries({
    'an unknown kid': { alg: 'ES256', typ: 'JWT', kid: 'not-ours' },
    'no kid': { alg: 'ES256', typ: 'JWT' },
    'a kid that is not a string': { alg: 'ES256', typ: 'JWT', kid: 7 }
  })) {
    const res = await me(app, sign(header, claims, testKeys.privateKey))
    t.equal(res.statusCode, 401, what)
    t.equal(res.json().code, 'unauthorized', what)
  }
})

t.test('bearer › security › a retired key verifies its tokens for one token lifetime after the rotation, no longer', async (t) => {
  const old = pair()
  const clock = new TestClock()
  const app = await build(t, { ACCESS_TOKEN_TTL: String(ttl), JWT_PREVIOUS_PUBLIC_KEYS: old.publicKey.replace(/\n/g, '\\n') }, { clock })
  const claimsAt = await claimsOf(app)
  const jwks = (await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })).json()
  t.equal(jwks.keys.length, 2, 'the JWKS publishes the current and the retired key')
  const oldKid = jwks.keys[1].kid
  t.not(oldKid, jwks.keys[0].kid)

  const byOldKey = sign({ alg: 'ES256', typ: 'JWT', kid: oldKid }, claimsAt(clock.now()), old.privateKey)
  t.equal((await me(app, byOldKey)).statusCode, 200, 'a token the retired key signed before the rotation works')
  t.equal((await me(app, sign({ alg: 'ES256', typ: 'JWT', kid: oldKid }, claimsAt(clock.now()), pair().privateKey))).statusCode, 401,
    'the retired kid with another key\'s signature does not')

  clock.advance((ttl + 1) * 1000)
  const lateOldKey = sign({ alg: 'ES256', typ: 'JWT', kid: oldKid }, claimsAt(clock.now()), old.privateKey)
  t.equal((await me(app, lateOldKey)).statusCode, 401, 'one lifetime later, even a fresh-looking token of the retired key is refused')
  const current = await given(app).signedIn()
  t.equal((await me(app, current.accessToken)).statusCode, 200, 'the current key keeps working')
})

t.test('config › invalid input › JWT_PREVIOUS_PUBLIC_KEYS that holds no PEM block stops start-up', async (t) => {
  await t.rejects(build(t, { JWT_PREVIOUS_PUBLIC_KEYS: 'not a key' }), /JWT_PREVIOUS_PUBLIC_KEYS/)
})
