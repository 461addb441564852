// OWASP API5 (broken function-level authorization), walked from the spec: every operation whose `security`
// asks for scopes is refused (403 forbidden problem, naming the scope) to a signed-in caller whose
// credential lacks them — a plain user and a developer with real sessions, a partner key without its scope —
// while the operations their scopes do allow let them in (so the 403s are about scopes, not a broken token).
import t from 'tap'
import type { Role } from '../../db/types.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'
import { isProblem, operations, scopedRequirements, validRequest, type WalkedOperation } from './spec-walk.js'

/** Whether a credential of `scheme` holding `scopes` meets one of the operation's requirements. */
const allows = (op: WalkedOperation, scheme: string, scopes: readonly string[]) =>
  op.security.some((r) => Object.keys(r).length === 1 && scheme in r && r[scheme]!.every((s) => scopes.includes(s)))

t.test('security › function-level authorization › every scoped operation is 403 to a caller without the scope', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
  const scoped = operations.filter((op) => scopedRequirements(op).length > 0)
  t.ok(scoped.length > 40, `${scoped.length} operations ask for scopes`)

  const callers: Array<{ name: string, scheme: string, scopes: readonly string[], headers: Record<string, string> }> = []
  for (const role of ['user', 'developer'] as Role[]) {
    const signedIn = await given(app).signedIn({ role })
    callers.push({ name: `a signed-in ${role}`, scheme: 'bearer', scopes: scopesFor(role), headers: signedIn.headers })
  }
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
