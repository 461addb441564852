// OWASP API5 (broken function-level authorization), walked from the spec: every operation whose `security`
// asks for scopes is refused (403 forbidden problem, naming the scope) to a signed-in caller whose
// credential lacks them — a plain user and a developer with real sessions, an admin's personal access token
// with one scope, a partner key without its scope — while the operations their scopes do allow let them in
// (so the 403s are about scopes, not a broken token). A read-only personal access token is refused every
// write, and any personal access token every `x-session-only` operation.
import t from 'tap'
import type { Role } from '../../db/types.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { build } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'
import { isProblem, operations, scopedRequirements, validRequest, type WalkedOperation } from './spec-walk.js'

/** Whether a credential of `scheme` holding `scopes` meets one of the operation's requirements. */
const allows = (op: WalkedOperation, scheme: string, scopes: readonly string[]) =>
  op.security.some((r) => Object.keys(r).length === 1 && scheme in r && r[scheme]!.every((s) => scopes.includes(s)))

/** A personal access token made through the API by a signed-in caller. */
async function personalToken (app: Awaited<ReturnType<typeof build>>, headers: Record<string, string>, body: { scopes: string[], readOnly?: boolean }) {
  const res = await app.inject({ method: 'POST', url: '/v1/users/me/tokens', payload: { name: 'walk', ...body }, headers })
  if (res.statusCode !== 201) throw new Error(`createPersonalToken: ${res.statusCode} ${res.body}`)
  return res.json().token as string
}

t.test('security › function-level authorization › every scoped operation is 403 to a caller without the scope', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
  const scoped = operations.filter((op) => scopedRequirements(op).length > 0)
  t.ok(scoped.length > 40, `${scoped.length} operations ask for scopes`)

  const callers: Array<{ name: string, scheme: string, scopes: readonly string[], headers: Record<string, string> }> = []
  for (const role of ['user', 'developer'] as Role[]) {
    const signedIn = await given(app).signedIn({ role })
    callers.push({ name: `a signed-in ${role}`, scheme: 'bearer', scopes: scopesFor(role), headers: signedIn.headers })
  }
  // An admin's personal access token with one scope: every other scope of the admin's is refused to it.
  const admin = await given(app).signedIn({ role: 'admin' })
  callers.push({ name: 'an admin\'s personal access token with scope containers', scheme: 'bearer', scopes: ['containers'], headers: bearer(await personalToken(app, admin.headers, { scopes: ['containers'] })) })
  const f = partners(app)
  const partner = await f.partner()
  callers.push({ name: 'a partner key without scopes', scheme: 'partnerKey', scopes: [], headers: (await f.key(partner.id, { scopes: [] })).headers })

  for (const caller of callers) {
    const refused = scoped.filter((op) => op.security.some((r) => caller.scheme in r) && !allows(op, caller.scheme, caller.scopes))
    const wrong: string[] = []
    for (const op of refused) {
      const request = validRequest(op)
      const res = await app.inject({ ...request, headers: { ...request.headers, ...caller.headers } })
      const missing = op.security.flatMap((r) => r[caller.scheme] ?? []).filter((s) => !caller.scopes.includes(s))
      if (res.statusCode !== 403 || !isProblem(res) || res.json().code !== 'forbidden' || !missing.some((s) => res.json().detail.includes(s))) {
        wrong.push(`${op.operationId}: ${res.statusCode} ${res.body.slice(0, 120)}`)
      }
      if (!op.statuses.has('403')) wrong.push(`${op.operationId} does not declare 403`)
    }
    t.ok(refused.length > 0, `${caller.name} lacks the scopes of ${refused.length} operations`)
    t.same(wrong, [], `${caller.name}: 403 naming the missing scope on ${refused.map((op) => op.operationId).join(', ')}`)

    // The reads the caller's scopes allow: not refused, so the token itself is good.
    const allowed = scoped.filter((op) => op.method === 'GET' && allows(op, caller.scheme, caller.scopes) && !op.path.includes('{'))
    for (const op of allowed) {
      const request = validRequest(op)
      const res = await app.inject({ ...request, headers: { ...request.headers, ...caller.headers } })
      t.notOk([401, 403].includes(res.statusCode), `${caller.name} may call ${op.operationId} (${res.statusCode})`)
    }
  }
})

t.test('security › function-level authorization › personal access tokens: read-only ones write nothing, none calls an x-session-only operation', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
  const admin = await given(app).signedIn({ role: 'admin' })
  const every = scopesFor('admin')
  const readOnly = bearer(await personalToken(app, admin.headers, { scopes: every, readOnly: true }))
  const full = bearer(await personalToken(app, admin.headers, { scopes: every }))
  const bearerOps = operations.filter((op) => op.security.some((r) => 'bearer' in r))

  const writes = bearerOps.filter((op) => !['GET', 'HEAD'].includes(op.method))
  t.ok(writes.length > 20, `${writes.length} bearer operations write`)
  const wrong: string[] = []
  for (const op of writes) {
    const request = validRequest(op)
    const res = await app.inject({ ...request, headers: { ...request.headers, ...readOnly } })
    if (res.statusCode !== 403 || !isProblem(res) || res.json().code !== 'forbidden') wrong.push(`${op.operationId}: ${res.statusCode} ${res.body.slice(0, 120)}`)
  }
  t.same(wrong, [], 'a read-only token: 403 on every write')

  const sessionOnly = bearerOps.filter((op) => op.raw['x-session-only'] === true)
  t.same(sessionOnly.map((op) => op.operationId).sort(), ['createPersonalToken', 'deleteMe', 'signOut'])
  for (const op of sessionOnly) {
    const request = validRequest(op)
    const res = await app.inject({ ...request, headers: { ...request.headers, ...full } })
    t.equal(res.statusCode, 403, `${op.operationId} refuses a personal access token holding every scope`)
    t.match(res.json(), { code: 'forbidden', detail: /personal access token/ })
  }
  t.equal((await app.inject({ method: 'GET', url: '/v1/users/me', headers: full })).statusCode, 200, 'the token itself is good')
})
