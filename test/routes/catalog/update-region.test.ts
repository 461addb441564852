import { createSign } from 'node:crypto'
import t from 'tap'
import { build, testKeys } from '../../helpers/build.js'
import { bearer, given } from '../../helpers/given.js'

const patch = (app: Awaited<ReturnType<typeof build>>, code: string, body: unknown, headers: Record<string, string> = {}) =>
  app.inject({ method: 'PATCH', url: `/v1/regions/${code}`, payload: body as object, headers })

function unsignedToken (claims: object) {
  const enc = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.`
}

t.test('updateRegion › valid › disables a region, returns it, and purges region and app reads', async (t) => {
  const app = await build(t)
  const region = await given(app).region({ code: 'eu-north-9' })
  const token = await given(app).token({ role: 'admin', scopes: ['catalog:write'] })

  const res = await patch(app, region.code, { enabled: false }, bearer(token))

  t.equal(res.statusCode, 200)
  t.match(res.json(), { code: 'eu-north-9', enabled: false })
  t.equal(res.headers['cache-control'], 'private, no-store')
  const row = await app.db.selectFrom('region').select('enabled').where('code', '=', region.code).executeTakeFirstOrThrow()
  t.equal(row.enabled, false)
  const counts = await app.queue.counts('cache-purge')
  t.equal(counts.waiting, 1, 'a purge job waits for the worker')

  const list = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(list.json().items[0].enabled, false, 'the public read shows the change')
})

t.test('updateRegion › valid › the change is audited: who, what, and the values before', async (t) => {
  const app = await build(t)
  const region = await given(app).region({ name: 'Before' })
  const operator = await given(app).signedIn({ role: 'developer' })

  const res = await patch(app, region.code, { enabled: false, name: 'After' }, operator.headers)

  t.equal(res.statusCode, 200)
  const audit = await app.db.selectFrom('audit_event').selectAll().where('action', '=', 'region.updated').where('target_id', '=', region.code).execute()
  t.equal(audit.length, 1)
  t.equal(audit[0]!.actor_id, operator.account.id)
  t.same(audit[0]!.details, { changes: { enabled: false, name: 'After' }, before: { enabled: true, name: 'Before' } })
})

t.test('updateRegion › insufficient permissions › no token, a bad token, an expired one, alg none: 401', async (t) => {
  const app = await build(t)
  const region = await given(app).region()
  const valid = await given(app).token({ scopes: ['catalog:write'] })
  const [header, payload] = valid.split('.')
  const tampered = `${header}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload!, 'base64url').toString()), role: 'admin' })).toString('base64url')}.${valid.split('.')[2]}`
  const now = Math.floor(Date.now() / 1000)
  const signer = createSign('SHA256')
  const expiredHeader = Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'JWT' })).toString('base64url')
  const expiredBody = Buffer.from(JSON.stringify({ sub: 'u1', role: 'admin', scopes: ['catalog:write'], iat: now - 3600, exp: now - 1800, iss: app.config.jwt.issuer, aud: app.config.jwt.audience })).toString('base64url')
  signer.update(`${expiredHeader}.${expiredBody}`)
  const expiredToken = `${expiredHeader}.${expiredBody}.${signer.sign({ key: testKeys.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`

  const cases: Array<[string, Record<string, string>]> = [
    ['no token', {}],
    ['not a bearer header', { authorization: 'Basic dXNlcjpwYXNz' }],
    ['garbage', bearer('garbage')],
    ['tampered payload', bearer(tampered)],
    ['alg none', bearer(unsignedToken({ sub: 'u1', role: 'admin', scopes: ['catalog:write'] }))],
    ['expired', bearer(expiredToken)]
  ]
  for (const [name, headers] of cases) {
    const res = await patch(app, region.code, { enabled: false }, headers)
    t.equal(res.statusCode, 401, name)
    t.equal(res.json().code, 'unauthorized', name)
    t.match(res.headers['content-type'], /^application\/problem\+json/, name)
  }
  const row = await app.db.selectFrom('region').select('enabled').where('code', '=', region.code).executeTakeFirstOrThrow()
  t.equal(row.enabled, true, 'nothing changed')
})

t.test('updateRegion › insufficient permissions › a valid token without catalog:write gets 403', async (t) => {
  const app = await build(t)
  const region = await given(app).region()
  const res = await patch(app, region.code, { enabled: false }, bearer(await given(app).token({ scopes: ['catalog:read'] })))
  t.equal(res.statusCode, 403)
  t.match(res.json(), { code: 'forbidden', detail: 'This operation needs the scope catalog:write.' })
  t.equal((await app.queue.counts('cache-purge')).waiting, 0, 'nothing purged')
})

t.test('updateRegion › invalid input › each malformed body is a 400 or 415 and changes nothing', async (t) => {
  const app = await build(t)
  const region = await given(app).region()
  const auth = bearer(await given(app).token({ scopes: ['catalog:write'] }))
  const cases: Array<[string, unknown, number, string | undefined]> = [
    ['empty object', {}, 400, '/body'],
    ['wrong type', { enabled: 'no' }, 400, '/body/enabled'],
    ['unknown field (mass assignment)', { enabled: false, current_ami: 'ami-1' }, 400, '/body/current_ami'],
    ['empty name', { name: '' }, 400, '/body/name']
  ]
  for (const [name, body, status, field] of cases) {
    const res = await patch(app, region.code, body, auth)
    t.equal(res.statusCode, status, name)
    if (field) t.ok(res.json().errors.some((e: { field: string }) => e.field === field), `${name} names ${field}`)
  }
  const text = await app.inject({ method: 'PATCH', url: `/v1/regions/${region.code}`, payload: 'enabled=false', headers: { ...auth, 'content-type': 'text/plain' } })
  t.equal(text.statusCode, 415, 'a text body never reaches the handler')
  t.equal(text.json().code, 'unsupported_media_type')
  const broken = await app.inject({ method: 'PATCH', url: `/v1/regions/${region.code}`, payload: '{"enabled": fal', headers: { ...auth, 'content-type': 'application/json' } })
  t.equal(broken.statusCode, 400, 'malformed JSON')
  t.equal(broken.json().code, 'bad_request')
  const missing = await app.inject({ method: 'PATCH', url: `/v1/regions/${region.code}`, headers: auth })
  t.equal(missing.statusCode, 400, 'no body at all')
  t.same(missing.json().errors, [{ field: '/body', message: 'is required' }])
  const bad = await patch(app, 'Not-A-Region', { enabled: false }, auth)
  t.equal(bad.statusCode, 400)
  t.equal(bad.json().errors[0].field, '/params/regionCode')

  const row = await app.db.selectFrom('region').selectAll().where('code', '=', region.code).executeTakeFirstOrThrow()
  t.equal(row.enabled, true)
  t.equal(row.name, region.name)
})

t.test('updateRegion › non-existing › 404 not_found, nothing purged', async (t) => {
  const app = await build(t)
  const res = await patch(app, 'zz-nowhere-1', { enabled: false }, bearer(await given(app).token({ scopes: ['catalog:write'] })))
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
  t.equal((await app.queue.counts('cache-purge')).waiting, 0)
})
