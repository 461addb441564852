// Issue 18.10: a garbage token with a bad body got 400 naming the operation's fields (validation ran before the
// security handlers): a stranger could map every operation's schema. Now security runs before the body is read.
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { isProblem, operations, schemes } from '../security/spec-walk.js'

const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
const secured = operations.filter((op) => op.security.length > 0 && op.security.every((r) => Object.keys(r).length > 0))

/** Wrong in every part a schema checks: path parameters, query, body. */
function badRequest (op: (typeof operations)[number], credentials: Record<string, string>) {
  const url = op.path.replace(/\{\w+\}/g, 'not-a-valid-id%00') + '?limit=-7&cursor=%%%&unknown=1'
  return {
    method: op.method as 'POST',
    url,
    headers: { ...credentials, ...(op.body ? { 'content-type': 'application/json' } : {}) },
    ...(op.body ? { payload: '{"definitely":"not","the":["schema"],"role":"admin"}' } : {})
  }
}

t.test('every secured operation › insufficient permissions › a garbage credential with a bad request is 401, naming no field', async (t) => {
  t.ok(secured.length > 50, `${secured.length} secured operations`)
  const wrong: string[] = []
  for (const op of secured) {
    const garbage = Object.fromEntries(op.security.flatMap((r) => Object.keys(r)).map((scheme) =>
      [schemes[scheme]!.header, schemes[scheme]!.bearer ? 'Bearer garbage.token.here' : 'garbage']))
    for (const [what, credentials] of [['no credential', {}], ['a garbage credential', garbage]] as const) {
      const res = await app.inject(badRequest(op, credentials))
      if (res.statusCode !== 401 || !isProblem(res) || 'errors' in res.json()) wrong.push(`${op.operationId} with ${what}: ${res.statusCode} ${res.body.slice(0, 100)}`)
    }
  }
  t.same(wrong, [], 'nothing about the request is validated before the caller is known')
})

t.test('every bearer operation with scopes › insufficient permissions › a valid token without the scope gets 403 before validation', async (t) => {
  const token = await given(app).token({ scopes: [] })
  const scoped = secured.filter((op) => op.security.every((r) => 'bearer' in r && r.bearer!.length > 0))
  t.ok(scoped.length > 20, `${scoped.length} operations need a scope`)
  const wrong: string[] = []
  for (const op of scoped) {
    const res = await app.inject(badRequest(op, { authorization: `Bearer ${token}` }))
    if (res.statusCode !== 403 || !isProblem(res) || 'errors' in res.json()) wrong.push(`${op.operationId}: ${res.statusCode} ${res.body.slice(0, 100)}`)
  }
  t.same(wrong, [], 'forbidden, not a validation answer')
})
