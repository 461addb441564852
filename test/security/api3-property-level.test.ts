// OWASP API3 (broken object property level authorization), walked from the spec.
// Excessive exposure: every object in every response schema forbids properties it does not declare (so a
// column added to a row cannot slip into an answer: test mode validates every response against the spec),
// except the free-form ones listed with their reason; and the answers that describe accounts never carry a
// password, a hash or a secret. Mass assignment: properties a caller must not set (`role`, `id`,
// `email_verified`, `partnerId`, `createdAt`...) in the body of any operation that does not declare them are
// refused with 400 naming the field, and nothing in the database changes. (spec.test.ts checks statically
// that request bodies say additionalProperties: false; this sends them.)
import { sql } from '../../db/kysely.js'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { credentialsFor, everyCredential, exampleBody, isProblem, operations, validRequest, type Node } from './spec-walk.js'

const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })

// ---- Excessive exposure: the response schemas ----------------------------------------------------------------

/** Free-form objects in answers, each for a reason; anything else open is a finding. */
const openObjects: Record<string, string> = {
  'listAuditEvents 200 /items[]/details': 'what an audited change was (before/after), written by our code only, per action',
  'job.result': 'each job kind\'s own outcome (a container id, a cluster id), written by our job handlers only',
  'getJwks 200 /keys[]': 'a JWK (RFC 7517) has members by key type; the test below checks it holds no private member'
}
const jobResult = /^(assignContainer|createCluster|deleteCluster|stopContainer|shutdownContainer|rollAmi|getJob|cancelJob) 20[02] (\/job)?(\/children\[\])?\/result$/

const isObjectSchema = (s: Node) => s.type === 'object' || (Array.isArray(s.type) && s.type.includes('object')) || s.properties !== undefined
/** A map of typed values (`additionalProperties: { type: integer }`) declares what its members are. */
const isTypedMap = (s: Node) => typeof s.additionalProperties === 'object' && !isObjectSchema(s.additionalProperties) && !s.properties

function openObjectsIn (schema: Node, where: string, found: string[]) {
  if (!schema || typeof schema !== 'object') return
  if (isObjectSchema(schema) && schema.additionalProperties !== false && schema.unevaluatedProperties !== false && !isTypedMap(schema)) found.push(where)
  for (const [key, child] of Object.entries<Node>(schema.properties ?? {})) openObjectsIn(child, `${where}/${key}`, found)
  if (schema.items) openObjectsIn(schema.items, `${where}[]`, found)
  for (const key of ['oneOf', 'anyOf', 'allOf']) for (const child of schema[key] ?? []) openObjectsIn(child, where, found)
}

t.test('security › excessive exposure › every object in every response schema forbids undeclared properties', async (t) => {
  const found: string[] = []
  let schemas = 0
  for (const op of operations) {
    for (const [status, response] of Object.entries<Node>(op.raw.responses)) {
      for (const [type, media] of Object.entries<Node>(response.content ?? {})) {
        if (!/json/.test(type) || !media.schema) continue
        schemas++
        openObjectsIn(media.schema, `${op.operationId} ${status} `, found)
      }
    }
  }
  t.ok(schemas > 200, `${schemas} JSON response schemas walked`)
  const unexplained = [...new Set(found.map((w) => w.replace(' /', ' /').replace(/ $/, ' (root)')))]
    .filter((w) => !(w in openObjects) && !jobResult.test(w))
  t.same(unexplained, [], 'no open object outside the justified list')
})

// ---- Excessive exposure: what the account answers hold --------------------------------------------------------

const secretKey = /password|hash|secret|salt|private/i
/** Keys (anywhere in a JSON value) whose name says credential. */
function secretKeys (value: unknown, at = ''): string[] {
  if (Array.isArray(value)) return value.flatMap((v, i) => secretKeys(v, `${at}/${i}`))
  if (value === null || typeof value !== 'object') return []
  return Object.entries(value).flatMap(([k, v]) => [...(secretKey.test(k) ? [`${at}/${k}`] : []), ...secretKeys(v, `${at}/${k}`)])
}

t.test('security › excessive exposure › sign-up, sign-in, refresh, me, sessions, the admin\'s user list and audit trail carry no password, hash or secret', async (t) => {
  const admin = await given(app).signedIn({ role: 'admin' })
  const password = 'A-very-private-passphrase-42'
  const user = await given(app).signedIn({ password })
  const hash = (await app.db.selectFrom('account').select('password_hash').where('id', '=', user.account.id).executeTakeFirstOrThrow()).password_hash!

  const answers = {
    signUp: await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email: 'new-user@example.test', password, name: 'New' } }),
    signIn: await app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: user.account.email, password } }),
    refreshSession: await app.inject({ method: 'POST', url: '/v1/sessions/refresh', payload: { refreshToken: user.refreshToken } }),
    getMe: await app.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers }),
    updateMe: await app.inject({ method: 'PATCH', url: '/v1/users/me', payload: { password: `${password}-new`, currentPassword: password }, headers: user.headers }),
    listMySessions: await app.inject({ method: 'GET', url: '/v1/users/me/sessions', headers: user.headers }),
    listUsers: await app.inject({ method: 'GET', url: '/v1/admin/users?limit=100', headers: admin.headers }),
    updateUser: await app.inject({ method: 'PATCH', url: `/v1/admin/users/${user.account.id}`, payload: { role: 'developer' }, headers: admin.headers }),
    listAuditEvents: await app.inject({ method: 'GET', url: '/v1/admin/audit?limit=100', headers: admin.headers })
  }
  for (const [operationId, res] of Object.entries(answers)) {
    t.ok(res.statusCode < 300, `${operationId} answered ${res.statusCode}`)
    t.same(secretKeys(res.json()), [], `${operationId}: no password, hash or secret member`)
    for (const value of [password, hash, '$argon2']) t.notOk(res.body.includes(value), `${operationId} does not carry ${value === password ? 'the password' : 'the hash'}`)
  }
  t.ok(answers.listUsers.json().items.length >= 3, 'the admin listing holds the accounts it was checked for')
})

t.test('security › excessive exposure › the published signing keys hold no private member', async (t) => {
  const res = await app.inject({ method: 'GET', url: '/.well-known/jwks.json' })
  t.equal(res.statusCode, 200)
  for (const key of res.json().keys) {
    t.same(['d', 'p', 'q', 'dp', 'dq', 'qi', 'k'].filter((m) => m in key), [], `key ${key.kid}: public members only`)
  }
})

// ---- Mass assignment ------------------------------------------------------------------------------------------

/** Properties a caller never sets, in the spellings a client would try. */
const forbidden: Array<[string, unknown]> = [
  ['id', '00000000-0000-4000-8000-000000000000'],
  ['role', 'admin'],
  ['scopes', ['admin']],
  ['email_verified', true],
  ['emailVerified', true],
  ['emailVerifiedAt', '2020-01-01T00:00:00Z'],
  ['partnerId', '00000000-0000-4000-8000-000000000000'],
  ['partner_id', '00000000-0000-4000-8000-000000000000'],
  ['userId', '00000000-0000-4000-8000-000000000000'],
  ['ownerId', '00000000-0000-4000-8000-000000000000'],
  ['createdAt', '2020-01-01T00:00:00Z'],
  ['created_at', '2020-01-01T00:00:00Z'],
  ['disabled', false],
  ['isAdmin', true],
  ['plan', 'enterprise'],
  ['state', 'in_use'],
  ['password_hash', 'x'],
  // Prototype pollution: refused by the JSON parser itself (a 400 problem, before any schema).
  ['__proto__', { role: 'admin' }],
  ['constructor', { prototype: { role: 'admin' } }]
]
const pollution = new Set(['__proto__', 'constructor'])

async function rowCounts (): Promise<Record<string, number>> {
  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' and table_name not like 'kysely_%' order by 1`.execute(app.db)
  const counts: Record<string, number> = {}
  for (const { name } of tables.rows) counts[name] = Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(name)}`.execute(app.db)).rows[0]!.n)
  return counts
}

t.test('security › mass assignment › a property the operation does not declare is refused with 400 naming it, and nothing is written', async (t) => {
  // Security is checked before the body: every operation is called with a credential that passes it.
  const { assigned: a, held, values } = await everyCredential(app)
  const user = a.user
  const withObjectBody = operations.filter((op) => {
    const body = op.body?.contents.find((c) => c.type === 'application/json')
    return body && body.schema.format !== 'binary'
  })
  t.ok(withObjectBody.length > 25, `${withObjectBody.length} operations take a JSON body`)
  const accountBefore = await app.db.selectFrom('account').selectAll().where('id', '=', user.account.id).executeTakeFirstOrThrow()
  const countsBefore = await rowCounts()

  const wrong: string[] = []
  for (const op of withObjectBody) {
    const branches: Node[] = op.body!.contents.find((c) => c.type === 'application/json')!.schema.oneOf ?? [op.body!.contents.find((c) => c.type === 'application/json')!.schema]
    const declared = new Set(branches.flatMap((b) => Object.keys(b.properties ?? {})))
    const base = JSON.parse(exampleBody(op)!.payload)
    const request = validRequest(op, values)
    for (const [key, value] of forbidden) {
      if (declared.has(key)) continue
      // An own `__proto__` member, as JSON.parse makes it from a client's text.
      const payload = `${JSON.stringify(base).slice(0, -1)}${Object.keys(base).length > 0 ? ',' : ''}${JSON.stringify(key)}:${JSON.stringify(value)}}`
      const res = await app.inject({ ...request, payload, headers: { ...request.headers, ...credentialsFor(op, held), 'idempotency-key': `mass-${op.operationId}-${key}` } })
      const fields = res.statusCode === 400 ? (res.json().errors ?? []).map((e: { field: string }) => e.field) : []
      if (res.statusCode !== 400 || !isProblem(res) || (!pollution.has(key) && !fields.includes(`/body/${key}`))) wrong.push(`${op.operationId} + ${key}: ${res.statusCode} ${res.body.slice(0, 120)}`)
    }
  }
  t.same(wrong, [], 'every undeclared property is a 400 naming /body/<property> (prototype keys: a 400 from the parser)')
  t.same(await rowCounts(), countsBefore, 'no row added or removed in any table')
  t.same(await app.db.selectFrom('account').selectAll().where('id', '=', user.account.id).executeTakeFirstOrThrow(), accountBefore, 'the caller\'s account is unchanged (role, verification, partner)')
})
