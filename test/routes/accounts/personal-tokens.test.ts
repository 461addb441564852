// Issue 23: personal access tokens, made by a signed-in user, sent as a bearer token in place of a session.
import { createHash, randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>
type Response = Awaited<ReturnType<App['inject']>>
type Headers = Record<string, string>

const day = 86_400_000
const missing = '00000000-0000-4000-8000-000000000000'

const create = (app: App, headers: Headers, payload: object) => app.inject({ method: 'POST', url: '/v1/users/me/tokens', payload, headers })
const listMine = (app: App, headers: Headers, query = '') => app.inject({ method: 'GET', url: `/v1/users/me/tokens${query}`, headers })
const revokeMine = (app: App, headers: Headers, id: string) => app.inject({ method: 'DELETE', url: `/v1/users/me/tokens/${id}`, headers })
const listAll = (app: App, headers: Headers, query = '') => app.inject({ method: 'GET', url: `/v1/admin/tokens${query}`, headers })
const revokeAny = (app: App, headers: Headers, id: string) => app.inject({ method: 'DELETE', url: `/v1/admin/tokens/${id}`, headers })
const getMe = (app: App, headers: Headers) => app.inject({ method: 'GET', url: '/v1/users/me', headers })

/** A token made through the API by a signed-in user; `headers` send it. */
async function pat (app: App, owner: { headers: Headers }, payload: object = {}) {
  const res = await create(app, owner.headers, { name: 'CI', scopes: ['account'], ...payload })
  if (res.statusCode !== 201) throw new Error(`createPersonalToken: ${res.statusCode} ${res.body}`)
  const body = res.json() as { id: string, token: string, prefix: string }
  return { ...body, headers: bearer(body.token) }
}

function assertProblem (t: Test, res: Response, status: number, code: string, label = code) {
  t.equal(res.statusCode, status, `${label}: ${res.statusCode} ${res.body.slice(0, 160)}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/, label)
  t.equal(res.json().code, code, label)
}

const tokenRow = (app: App, id: string) => app.db.selectFrom('personal_access_token').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
const auditOf = (app: App, action: string, targetId: string) =>
  app.db.selectFrom('audit_event').selectAll().where('action', '=', action).where('target_id', '=', targetId).execute()

t.test('createPersonalToken › valid › shown once, stored as its SHA-256 only, audited, and accepted as a bearer token', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()

  const res = await create(app, me.headers, { name: 'Backup script', scopes: ['account', 'containers'] })

  t.equal(res.statusCode, 201)
  const body = res.json()
  t.match(body, { userId: me.account.id, name: 'Backup script', scopes: ['account', 'containers'], readOnly: false, lastUsedAt: null, revokedAt: null })
  t.match(body.token, /^frl_pat_[0-9a-f]{12}_[A-Za-z0-9_-]{43}$/)
  t.ok(body.token.startsWith(`${body.prefix}_`), 'the prefix is the start of the token')
  const expiresIn = Date.parse(body.expiresAt) - Date.now()
  t.ok(expiresIn > 29 * day && expiresIn <= 30 * day, '30 days by default')

  const row = await tokenRow(app, body.id)
  t.equal(row.token_hash, createHash('sha256').update(body.token).digest('base64url'), 'stored hashed')
  const secret = body.token.slice(body.prefix.length + 1)
  t.notOk(Object.values(row).some((v) => String(v).includes(secret)), 'the secret is in no column')
  const [audit] = await auditOf(app, 'personal_token.created', body.id)
  t.match(audit, { actor_id: me.account.id, target_type: 'personal_access_token' })
  t.notOk(JSON.stringify(audit).includes(secret), 'nor in the audit trail')

  const call = await getMe(app, bearer(body.token))
  t.equal(call.statusCode, 200, 'the token reads the account')
  t.equal(call.json().id, me.account.id)
  t.notOk((await listMine(app, me.headers)).body.includes(secret), 'never shown again')
})

t.test('createPersonalToken › valid › an operator picks a subset of their scopes; the token is refused elsewhere (403)', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const expiresAt = new Date(Date.now() + 7 * day).toISOString()
  const token = await pat(app, admin, { name: 'Fleet dashboard', scopes: ['fleet:read'], expiresAt })
  t.equal((await tokenRow(app, token.id)).expires_at.toISOString(), expiresAt, 'the expiry asked for is kept')

  t.equal((await app.inject({ method: 'GET', url: '/v1/admin/fleet', headers: token.headers })).statusCode, 200, 'its scope: allowed')
  const users = await app.inject({ method: 'GET', url: '/v1/admin/users', headers: token.headers })
  assertProblem(t, users, 403, 'forbidden', 'a scope the admin holds but the token does not')
  t.match(users.json().detail, /users:read/)
  assertProblem(t, await getMe(app, token.headers), 403, 'forbidden', 'not even account unless chosen')
})

t.test('createPersonalToken › valid › a read-only token reads and is refused every write (403)', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const token = await pat(app, me, { name: 'Reader', scopes: ['account', 'containers'], readOnly: true })
  t.equal((await getMe(app, token.headers)).statusCode, 200)
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers', headers: token.headers })).statusCode, 200)
  const rename = await app.inject({ method: 'PATCH', url: '/v1/users/me', payload: { name: 'Renamed' }, headers: token.headers })
  assertProblem(t, rename, 403, 'forbidden', 'a write')
  t.match(rename.json().detail, /read-only/)
  t.equal((await tokenRow(app, token.id)).read_only, true)
  const account = await app.db.selectFrom('account').select('name').where('id', '=', me.account.id).executeTakeFirstOrThrow()
  t.equal(account.name, me.account.name, 'nothing changed')
})

t.test('createPersonalToken › permissions › no token is 401; a personal access token cannot mint another (403)', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  assertProblem(t, await create(app, {}, { name: 'x', scopes: ['account'] }), 401, 'unauthorized')
  const token = await pat(app, me, { scopes: ['account', 'containers'] })
  const minted = await create(app, token.headers, { name: 'Another', scopes: ['account'] })
  assertProblem(t, minted, 403, 'forbidden', 'a PAT minting a PAT')
  t.match(minted.json().detail, /personal access token/)
  const rows = await app.db.selectFrom('personal_access_token').select('id').where('account_id', '=', me.account.id).execute()
  t.equal(rows.length, 1, 'nothing was made')
})

t.test('createPersonalToken › invalid input › bad names, scopes beyond the role and expiries; nothing is written', async (t) => {
  const app = await fileApp({ PAT_MAX_TTL_DAYS: '10', RATE_LIMIT_ENABLED: 'false' })
  const me = await given(app).signedIn()
  for (const payload of [{ scopes: ['account'] }, { name: 'x' }, { name: 'x', scopes: [] }, { name: 'x', scopes: ['root'] }, { name: ' ', scopes: ['account'] },
    { name: 'x', scopes: ['account'], readOnly: 'yes' }, { name: 'x', scopes: ['account'], expiresAt: 'tomorrow' }, { name: 'x', scopes: ['account', 'account'] }]) {
    assertProblem(t, await create(app, me.headers, payload), 400, 'validation_failed', JSON.stringify(payload))
  }
  const beyond = await create(app, me.headers, { name: 'x', scopes: ['containers', 'fleet:write'] })
  assertProblem(t, beyond, 422, 'unprocessable', 'a scope the user does not hold')
  t.match(beyond.json().errors, [{ field: '/body/scopes' }])
  t.match(beyond.json().detail, /fleet:write/)
  for (const expiresAt of [new Date(Date.now() - 1000).toISOString(), new Date(Date.now() + 11 * day).toISOString()]) {
    const res = await create(app, me.headers, { name: 'x', scopes: ['account'], expiresAt })
    assertProblem(t, res, 422, 'unprocessable', `expiresAt ${expiresAt}`)
    t.match(res.json().errors, [{ field: '/body/expiresAt' }])
  }
  const defaulted = await pat(app, me)
  const expiresIn = (await tokenRow(app, defaulted.id)).expires_at.getTime() - Date.now()
  t.ok(expiresIn <= 10 * day, 'the default never exceeds PAT_MAX_TTL_DAYS')
  const rows = await app.db.selectFrom('personal_access_token').select('id').where('account_id', '=', me.account.id).execute()
  t.equal(rows.length, 1, 'only the valid one exists')
})

t.test('createPersonalToken › invalid input › at most PAT_MAX_PER_ACCOUNT live tokens (422)', async (t) => {
  const app = await fileApp({ PAT_MAX_PER_ACCOUNT: '2' })
  const me = await given(app).signedIn()
  const first = await pat(app, me)
  await pat(app, me)
  assertProblem(t, await create(app, me.headers, { name: 'third', scopes: ['account'] }), 422, 'unprocessable')
  t.equal((await revokeMine(app, me.headers, first.id)).statusCode, 204)
  t.equal((await create(app, me.headers, { name: 'third', scopes: ['account'] })).statusCode, 201, 'a revoked one no longer counts')
})

t.test('personal access tokens › expiry › past its expiry (a moved clock) the token is a 401', async (t) => {
  const clock = new TestClock()
  const app = await build(t, {}, { clock })
  const me = await given(app).signedIn()
  const token = await pat(app, me, { expiresAt: new Date(clock.now() + day).toISOString() })
  t.equal((await getMe(app, token.headers)).statusCode, 200)
  clock.advance(day + 1000)
  const res = await getMe(app, token.headers)
  assertProblem(t, res, 401, 'unauthorized', 'expired')
  t.match(res.json().detail, /expired/)
})

t.test('personal access tokens › use › last use written at most once a minute, and one audit event per hour of use', async (t) => {
  const clock = new TestClock()
  const app = await build(t, {}, { clock })
  const me = await given(app).signedIn()
  const token = await pat(app, me, { expiresAt: new Date(clock.now() + 5 * day).toISOString() })

  for (let i = 0; i < 3; i++) t.equal((await getMe(app, token.headers)).statusCode, 200)
  const first = (await tokenRow(app, token.id)).last_used_at
  t.ok(first, 'the first use is recorded')
  t.equal((await auditOf(app, 'personal_token.used', token.id)).length, 1, 'a burst of calls is one audit event')

  clock.advance(61_000)
  await getMe(app, token.headers)
  const second = (await tokenRow(app, token.id)).last_used_at!
  t.ok(second.getTime() > first!.getTime(), 'a minute later the last use moves')
  t.equal((await auditOf(app, 'personal_token.used', token.id)).length, 1, 'still within the hour: no new event')
  const listed = (await listMine(app, me.headers)).json().items[0]
  t.equal(listed.lastUsedAt, second.toISOString(), 'the list shows the last use')

  clock.advance(3600_000)
  await getMe(app, token.headers)
  t.equal((await auditOf(app, 'personal_token.used', token.id)).length, 2, 'an hour later the next use is audited')
})

t.test('personal access tokens › password and address › a token can rename its account, never change the password, the address, sign out or delete it (403)', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const token = await pat(app, me, { scopes: ['account'] })
  const patch = (payload: object) => app.inject({ method: 'PATCH', url: '/v1/users/me', payload, headers: token.headers })

  const password = await patch({ password: 'an-entirely-new-passphrase', currentPassword: me.account.password })
  assertProblem(t, password, 403, 'forbidden', 'password')
  t.match(password.json().detail, /password/)
  assertProblem(t, await patch({ email: 'elsewhere@example.test', currentPassword: me.account.password }), 403, 'forbidden', 'address')
  assertProblem(t, await app.inject({ method: 'DELETE', url: '/v1/users/me', headers: token.headers }), 403, 'forbidden', 'deleteMe')
  assertProblem(t, await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: token.headers }), 403, 'forbidden', 'signOut')

  const after = await app.db.selectFrom('account').selectAll().where('id', '=', me.account.id).executeTakeFirstOrThrow()
  t.equal(after.password_hash, me.account.password_hash, 'the password is unchanged')
  t.equal(after.pending_email, null, 'no address change is pending')
  t.equal(after.deleted_at, null, 'the account is there')
  t.equal((await patch({ name: 'Renamed by script' })).statusCode, 200, 'the name may change')
})

t.test('personal access tokens › account › a disabled, a deleted or a demoted account stops its tokens at once', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const disabled = await given(app).signedIn()
  const disabledToken = await pat(app, disabled)
  t.equal((await getMe(app, disabledToken.headers)).statusCode, 200, 'cached by a first use')
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/admin/users/${disabled.account.id}`, payload: { disabled: true }, headers: admin.headers })).statusCode, 200)
  assertProblem(t, await getMe(app, disabledToken.headers), 401, 'unauthorized', 'disabled')
  t.ok((await tokenRow(app, disabledToken.id)).revoked_at, 'and revoked')

  const deleted = await given(app).signedIn()
  const deletedToken = await pat(app, deleted)
  t.equal((await getMe(app, deletedToken.headers)).statusCode, 200)
  t.equal((await app.inject({ method: 'DELETE', url: '/v1/users/me', headers: deleted.headers })).statusCode, 204)
  assertProblem(t, await getMe(app, deletedToken.headers), 401, 'unauthorized', 'deleted')

  const demoted = await given(app).signedIn({ role: 'admin' })
  const demotedToken = await pat(app, demoted, { scopes: ['users:read'] })
  t.equal((await listAll(app, demotedToken.headers)).statusCode, 200)
  t.equal((await app.inject({ method: 'PATCH', url: `/v1/admin/users/${demoted.account.id}`, payload: { role: 'user' }, headers: admin.headers })).statusCode, 200)
  assertProblem(t, await listAll(app, demotedToken.headers), 403, 'forbidden', 'a scope the role no longer grants')
})

t.test('listMyPersonalTokens › valid › my tokens newest first with their state; paginated; another user\'s are not there', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const other = await given(app).signedIn()
  await pat(app, other, { name: 'Not mine' })
  const a = await pat(app, me, { name: 'a' })
  const b = await pat(app, me, { name: 'b', readOnly: true })
  await revokeMine(app, me.headers, a.id)

  const res = await listMine(app, me.headers)
  t.equal(res.statusCode, 200)
  t.match(res.json().items, [{ id: b.id, name: 'b', readOnly: true, revokedAt: null }, { id: a.id, name: 'a', revokedAt: String }])
  t.equal(res.json().items.length, 2)
  t.notOk(res.body.includes(b.token.slice(b.prefix.length + 1)), 'no secret')

  const page1 = await listMine(app, me.headers, '?limit=1')
  t.equal(page1.json().items[0].id, b.id)
  const page2 = await listMine(app, me.headers, `?limit=1&cursor=${page1.json().nextCursor}`)
  t.same(page2.json(), { items: [res.json().items[1]], nextCursor: null })
})

t.test('listMyPersonalTokens › permissions › 401 without a token, 403 without the account scope', async (t) => {
  const app = await fileApp()
  assertProblem(t, await listMine(app, {}), 401, 'unauthorized')
  assertProblem(t, await listMine(app, bearer('frl_pat_000000000000_' + 'a'.repeat(43))), 401, 'unauthorized', 'an unknown PAT')
  assertProblem(t, await listMine(app, bearer(await given(app).token({ scopes: [] }))), 403, 'forbidden')
})

t.test('listMyPersonalTokens › invalid input › a cursor this API never made and a bad limit are 400', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  assertProblem(t, await listMine(app, me.headers, '?cursor=bm9wZQ'), 400, 'bad_request')
  assertProblem(t, await listMine(app, me.headers, '?limit=0'), 400, 'validation_failed')
})

t.test('revokeMyPersonalToken › valid › the token stops at once (even cached); again is 204 and audited once', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const token = await pat(app, me)
  t.equal((await getMe(app, token.headers)).statusCode, 200, 'in use (and in the per-process cache)')
  t.equal((await revokeMine(app, me.headers, token.id)).statusCode, 204)
  const res = await getMe(app, token.headers)
  assertProblem(t, res, 401, 'unauthorized', 'revoked')
  t.match(res.json().detail, /revoked/)
  t.equal((await revokeMine(app, me.headers, token.id)).statusCode, 204, 'again')
  t.equal((await auditOf(app, 'personal_token.revoked', token.id)).length, 1, 'audited once')

  const self = await pat(app, me)
  t.equal((await revokeMine(app, self.headers, self.id)).statusCode, 204, 'a token may revoke itself')
  assertProblem(t, await getMe(app, self.headers), 401, 'unauthorized', 'self-revoked')
})

t.test('revokeMyPersonalToken › valid › a revocation racing uses: each use is 200 or 401, none after the revocation answered', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const token = await pat(app, me)
  const uses = Array.from({ length: 20 }, () => getMe(app, token.headers))
  const revoke = revokeMine(app, me.headers, token.id)
  const more = Array.from({ length: 20 }, () => getMe(app, token.headers))
  const [revoked, ...answers] = await Promise.all([revoke, ...uses, ...more])
  t.equal(revoked!.statusCode, 204)
  t.same([...new Set(answers.map((r) => r.statusCode))].filter((s) => s !== 200 && s !== 401), [], 'only 200 or 401')
  const after = await Promise.all(Array.from({ length: 5 }, () => getMe(app, token.headers)))
  t.same(after.map((r) => r.statusCode), [401, 401, 401, 401, 401], 'every use after the revocation is refused')
})

t.test('revokeMyPersonalToken › permissions › 401 without a token; another user\'s token is a 404 and keeps working', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  const other = await given(app).signedIn()
  const theirs = await pat(app, other)
  assertProblem(t, await revokeMine(app, {}, theirs.id), 401, 'unauthorized')
  assertProblem(t, await revokeMine(app, me.headers, theirs.id), 404, 'not_found')
  t.equal((await getMe(app, theirs.headers)).statusCode, 200, 'still works')
})

t.test('revokeMyPersonalToken › invalid input › a token id that is not a UUID is 400', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  assertProblem(t, await revokeMine(app, me.headers, 'not-a-uuid'), 400, 'validation_failed')
})

t.test('revokeMyPersonalToken › not found › an unknown token is 404', async (t) => {
  const app = await fileApp()
  const me = await given(app).signedIn()
  assertProblem(t, await revokeMine(app, me.headers, missing), 404, 'not_found')
})

t.test('listPersonalTokens › valid › an admin sees everyone\'s tokens, or one user\'s', async (t) => {
  const app = await build(t)
  const admin = await given(app).signedIn({ role: 'admin' })
  const a = await given(app).signedIn()
  const b = await given(app).signedIn()
  const ta = await pat(app, a)
  const tb = await pat(app, b)
  const all = await listAll(app, admin.headers)
  t.equal(all.statusCode, 200)
  t.match(all.json().items.map((i: { id: string }) => i.id), [tb.id, ta.id])
  const one = await listAll(app, admin.headers, `?user=${a.account.id}`)
  t.same(one.json().items.map((i: { id: string, userId: string }) => [i.id, i.userId]), [[ta.id, a.account.id]])
})

t.test('listPersonalTokens › permissions › 401 without a token, 403 for a user', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  assertProblem(t, await listAll(app, {}), 401, 'unauthorized')
  assertProblem(t, await listAll(app, user.headers), 403, 'forbidden')
})

t.test('listPersonalTokens › invalid input › a user that is not a UUID is 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  assertProblem(t, await listAll(app, admin.headers, '?user=someone'), 400, 'validation_failed')
})

t.test('revokePersonalToken › valid › an admin revokes anyone\'s token at once; audited as the admin', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  const user = await given(app).signedIn()
  const token = await pat(app, user)
  t.equal((await getMe(app, token.headers)).statusCode, 200)
  t.equal((await revokeAny(app, admin.headers, token.id)).statusCode, 204)
  assertProblem(t, await getMe(app, token.headers), 401, 'unauthorized')
  const [audit] = await auditOf(app, 'personal_token.revoked', token.id)
  t.match(audit, { actor_id: admin.account.id, details: { accountId: user.account.id, by: 'admin' } })
})

t.test('revokePersonalToken › permissions › 401 without a token, 403 for a developer; the token keeps working', async (t) => {
  const app = await fileApp()
  const developer = await given(app).signedIn({ role: 'developer' })
  const user = await given(app).signedIn()
  const token = await pat(app, user)
  assertProblem(t, await revokeAny(app, {}, token.id), 401, 'unauthorized')
  assertProblem(t, await revokeAny(app, developer.headers, token.id), 403, 'forbidden')
  t.equal((await getMe(app, token.headers)).statusCode, 200)
})

t.test('revokePersonalToken › invalid input › a token id that is not a UUID is 400', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  assertProblem(t, await revokeAny(app, admin.headers, 'nope'), 400, 'validation_failed')
})

t.test('revokePersonalToken › not found › an unknown token is 404', async (t) => {
  const app = await fileApp()
  const admin = await given(app).signedIn({ role: 'admin' })
  assertProblem(t, await revokeAny(app, admin.headers, randomUUID()), 404, 'not_found')
})
