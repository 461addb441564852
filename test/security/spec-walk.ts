// The contract as the security tests walk it: every operation of openapi.yaml (read at run time, $refs
// resolved by openapi/spec.ts as for the app, as test/fuzz/spec-fuzz.ts does), with what a request needs to get past
// validation (an example body, path and required query values), so that a new operation is covered by every
// walk without a line here.
import { randomUUID } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'
import type { FastifyInstance } from 'fastify'
import { readDereferencedSpec, specPath } from '../../openapi/spec.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { loadOperations, type Param, type SpecOperation } from '../fuzz/spec-fuzz.js'
import { bearer, given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'

export type Node = Record<string, any>

export const document: Node = parse(readFileSync(specPath, 'utf8'))
const dereferenced = await readDereferencedSpec(specPath)

export interface WalkedOperation extends SpecOperation {
  /** The operation object, $refs resolved. */
  raw: Node
  tag: string
  rateLimit?: { max: number, timeWindow: string | number, key?: string, failClosed?: boolean }
}

export const operations: WalkedOperation[] = (await loadOperations(specPath)).map((op) => {
  const raw = dereferenced.paths[op.path][op.method.toLowerCase()] as Node
  return { ...op, raw, tag: raw.tags[0], rateLimit: raw['x-rate-limit'] }
})
export const operation = (operationId: string) => {
  const op = operations.find((o) => o.operationId === operationId)
  if (!op) throw new Error(`no operation ${operationId} in the spec`)
  return op
}

/** Security schemes: where each credential goes (header name, lower case). */
export const schemes: Record<string, { header: string, bearer: boolean }> = Object.fromEntries(
  Object.entries<Node>(document.components.securitySchemes).map(([name, s]) =>
    [name, s.type === 'http' ? { header: 'authorization', bearer: true } : { header: String(s.name).toLowerCase(), bearer: false }]))

/** A value a parameter's schema accepts (its example when it has one). */
export function validValue (param: Pick<Param, 'schema' | 'name'>): string {
  const s = param.schema
  if (s.examples?.[0] !== undefined) return String(s.examples[0])
  if (s.example !== undefined) return String(s.example)
  if (s.enum) return String(s.enum[0])
  if (s.format === 'uuid') return randomUUID()
  if (s.format === 'date-time') return new Date().toISOString()
  if (s.type === 'integer' || s.type === 'number') return String(s.minimum ?? 1)
  if (s.type === 'boolean') return 'false'
  if (param.name === 'provider') return 'google_drive'
  // A free string: letters pass every pattern of ours that is not a format.
  return 'a'.repeat(Math.max(16, s.minLength ?? 1))
}

/** The example request body of an operation (every body has one: test/docs/examples.test.ts). */
export function exampleBody (op: WalkedOperation): { payload: string, contentType: string } | undefined {
  const content = op.raw.requestBody?.content as Record<string, Node> | undefined
  if (!content) return undefined
  const [type, media] = Object.entries(content)[0]!
  const example = media.example ?? Object.values<Node>(media.examples ?? {})[0]?.value
  if (type === 'application/json') return { payload: JSON.stringify(example ?? {}), contentType: type }
  return { payload: typeof example === 'string' ? example : 'log line\n', contentType: type }
}

/** The URL of an operation: path and query parameters from `values` (else a valid value for the required ones). */
export function urlOf (op: WalkedOperation, values: Record<string, string> = {}, query: Record<string, string> = {}): string {
  const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const param = op.params.find((p) => p.in === 'path' && p.name === name)!
    return encodeURIComponent(values[name] ?? validValue(param))
  })
  const search = new URLSearchParams()
  for (const p of op.params) {
    if (p.in !== 'query' || p.name in query) continue
    if (p.name in values) search.set(p.name, values[p.name]!)
    else if (p.required) search.set(p.name, validValue(p))
  }
  for (const [k, v] of Object.entries(query)) search.set(k, v)
  const qs = search.toString()
  return qs ? `${path}?${qs}` : path
}

/**
 * Headers that pass an operation's security: the first requirement (OR) whose every scheme the test holds
 * credentials for (`held`: scheme → headers); none for an operation open to anyone. Security is checked before
 * the body is read, so a walk that means to reach validation must send these.
 */
export function credentialsFor (op: WalkedOperation, held: Record<string, Record<string, string>>): Record<string, string> {
  for (const requirement of op.security) {
    const schemesOf = Object.keys(requirement)
    if (schemesOf.every((scheme) => scheme in held)) return Object.assign({}, ...schemesOf.map((scheme) => held[scheme]))
  }
  return {}
}

/**
 * A credential for every security scheme, and the path values its holders own: an admin (every bearer scope)
 * holding an assigned container (`containerId`, its X-Container-Secret), a partner key, a host (`hostId`).
 */
export async function everyCredential (app: FastifyInstance) {
  const g = given(app)
  const assigned = await g.assignedContainer()
  const { account } = assigned.user
  await app.db.updateTable('account').set({ role: 'admin' }).where('id', '=', account.id).execute()
  await app.accountCache.invalidate(account.id)
  const { sid } = JSON.parse(Buffer.from(assigned.user.accessToken.split('.')[1]!, 'base64url').toString()) as { sid: string }
  const admin = bearer(app.issueAccessToken({ sub: account.id, role: 'admin', scopes: scopesFor('admin'), sid }))
  const key = await partners(app).withKey()
  const host = await g.host(assigned.offer.region)
  return {
    assigned,
    held: { bearer: admin, partnerKey: key.headers, containerSecret: { 'x-container-secret': assigned.warm.secret }, hostSecret: { 'x-host-secret': host.secret } } as Record<string, Record<string, string>>,
    values: { containerId: assigned.container.id as string, hostId: host.id }
  }
}

/** Required header parameters (not credentials), with valid values. */
export function requiredHeaders (op: WalkedOperation): Record<string, string> {
  return Object.fromEntries(op.params.filter((p) => p.in === 'header' && p.required).map((p) => [p.name.toLowerCase(), validValue(p)]))
}

/** A request that passes validation, to which a test adds credentials (or not). */
export function validRequest (op: WalkedOperation, values: Record<string, string> = {}) {
  const body = exampleBody(op)
  return {
    method: op.method as 'GET',
    url: urlOf(op, values),
    headers: { ...requiredHeaders(op), ...(body ? { 'content-type': body.contentType } : {}) } as Record<string, string>,
    ...(body ? { payload: body.payload } : {})
  }
}

/** The scopes a requirement asks of a scheme, for each requirement (OR) of the operation. */
export const scopedRequirements = (op: WalkedOperation) => op.security.filter((r) => Object.values(r).some((scopes) => scopes.length > 0))

export const isProblem = (res: { headers: Record<string, unknown>, statusCode: number, body: string }) =>
  /^application\/problem\+json/.test(String(res.headers['content-type'])) && (() => {
    try { return JSON.parse(res.body).status === res.statusCode } catch { return false }
  })()
