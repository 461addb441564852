// Fuzzing every operation of the contract (issue 11, item 1). For each operationId of openapi.yaml (read at run
// time), fast-check generates requests from the parameter and body schemas and sends them with app.inject to
// one app, in two phases:
//   refused: valid-ish requests with at least one mutation the contract refuses for sure (the oracle of
//            spec-fuzz.ts says which: a schema violation, a foreign content type, missing or bad credentials,
//            a body over the limit, malformed JSON). Every answer must be a 4xx problem, and the row counts
//            of every table must be the same after the batch as before it.
//   any:     valid-ish requests (proper credentials, ids that exist half the time) with 0 to 3 mutations of any
//            kind, odd-but-maybe-valid ones included (duplicated and junk headers, unknown query keys, bad
//            UTF-8, odd content types, no or bad credentials). No 5xx, problems for every 4xx; rows may change
//            only with accepted requests (the counts are taken again after each one).
// Every answer: never a 5xx, except a 503 the operation documents with code `unavailable` or `maintenance`
// (billing, Google sign-in, storage providers and maintenance windows answer it by design); every 4xx is
// application/problem+json whose `status` is the HTTP status and whose `code` is a string.
//
// CI runs a fixed seed and a few runs per phase. `npm run fuzz` runs more with a random seed (FUZZ_RUNS,
// FUZZ_SEED, FUZZ_ONLY=opA,opB to replay some operations); every failure prints the request and the replay.
import { createHmac, createPrivateKey, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import fc from 'fast-check'
import { sql } from '../../db/kysely.js'
import pg from 'pg'
import Stripe from 'stripe'
import t, { type Test } from 'tap'
import type { LightMyRequestResponse } from 'fastify'
import { readPlansFile } from '../../db/plans.js'
import { specPath } from '../../openapi/spec.js'
import { syncPlansWithStripe } from '../../services/billing/billing.service.js'
import { createStripeClient } from '../../services/billing/billing.stripe.js'
import { build, testKeys } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'
import { startStripeStandIn, stripeEvent, testStripeKey, testWebhookSecret } from '../helpers/stripe-stand-in.js'
import {
  Arbitraries, Oracle, applyMutations, buildRequest, describeRequest, loadOperations, operationArbitraries, short, text,
  type Body, type BuiltRequest, type Draft, type SpecOperation
} from './spec-fuzz.js'

// ---- Run settings ---------------------------------------------------------------------------------------------

const longRun = process.env.FUZZ_RUNS !== undefined
const runs = Math.max(1, Number(process.env.FUZZ_RUNS ?? 8))
const seed = process.env.FUZZ_SEED !== undefined ? Number(process.env.FUZZ_SEED) : longRun ? randomBytes(4).readInt32LE() : 20261127
if (!Number.isSafeInteger(seed) || !Number.isSafeInteger(runs)) throw new Error('FUZZ_SEED and FUZZ_RUNS are integers')
const only = new Set((process.env.FUZZ_ONLY ?? '').split(',').map((s) => s.trim()).filter(Boolean))
const phases = (process.env.FUZZ_PHASE ?? 'refused,any').split(',')
t.comment(`fuzz seed ${seed}, ${runs} runs per phase and operation (replay: FUZZ_SEED=${seed} FUZZ_RUNS=${runs} npm run fuzz)`)
if (longRun) console.log(`fuzz seed ${seed}`)

/** One seed per operation and phase, so adding an operation does not change what the others get. */
function seedOf (...parts: string[]): number {
  let h = 0x811c9dc5 ^ seed
  for (const c of parts.join('|')) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193)
  return h | 0
}

// ---- Known bugs: the assertion is a `todo` naming the bug, so the suite stays green and the bug stays visible.

interface Violation { kind: 'server error' | 'not a problem' | 'no Retry-After' | 'accepted' | 'rows written', detail: string }
interface KnownIssue { id: string, reason: string, match (op: SpecOperation, req: BuiltRequest, res: LightMyRequestResponse | null, v: Violation): boolean }

// Every bug the fuzzer found is fixed; a new one is listed here, with its reason, until it is.
const knownIssues: KnownIssue[] = []

// ---- The app, its users and the things that exist ---------------------------------------------------------------
//
// Special cases: operations whose success would get in the way of the rest of the run (their malformed
// requests are fuzzed like any other's).
//   signOut, updateMe, deleteMe   run as users of their own: succeeding ends or changes that user only.
//   updateUser, revokePartnerKey  the existing ids offered are a victim user's and a victim key's, never the
//                                 admin's or the key the partner operations use.
//   revokeMySession               no existing session id is offered (the only one would be the admin's).
//   shutdownContainer             shuts down a container of its own; the other container-agent operations keep theirs.
//   setMaintenance                `waitSeconds` is 0 or absent: up to 60 s of waiting for queued jobs is not fuzzing.
//   streamJobEvents               only ids of no job: a real job's stream stays open until the job ends (no worker here).
//   stripeWebhook                 signed as Stripe does once the body is final, unless the signature is what is fuzzed.
//   signInWithGoogle              Google is not configured (no network): valid requests get the documented 503.
//   rate limits                   off: they would answer 429 after a few runs (test/plugins/rate-limit*.test.ts).

const bootstrapSecret = 'fuzz-bootstrap-secret-0123456789'
const metricsToken = 'fuzz-metrics-scrape-token-0123456789'
const stripe = await startStripeStandIn(t)
const app = await build(t, {
  // Rate limits would turn most runs into 429s after a few requests (they have their own tests).
  RATE_LIMIT_ENABLED: 'false',
  HOST_BOOTSTRAP_SECRET: bootstrapSecret,
  STRIPE_SECRET_KEY: testStripeKey,
  STRIPE_WEBHOOK_SECRET: testWebhookSecret,
  STRIPE_API_URL: stripe.url,
  BILLING_ENFORCED: 'false',
  METRICS_TOKEN: metricsToken
})
await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, await readPlansFile())
const plans = (await readPlansFile()).map((p) => p.id)
const g = given(app)
const admin = await g.signedIn({ role: 'admin' })
// The target of admin operations on users, of sign-in and refresh: never the admin itself.
const victim = await g.signedIn()
// Operations that end their caller (sign out, delete or change the account) run as users of their own.
const selfUsers: Record<string, Awaited<ReturnType<typeof g.signedIn>>> = {
  signOut: await g.signedIn(),
  updateMe: await g.signedIn(),
  deleteMe: await g.signedIn()
}
const revoked = await g.signedIn()
await app.inject({ method: 'DELETE', url: '/v1/sessions/current', headers: revoked.headers })
const offer = await g.offer()
const warm = await g.warmContainer(offer)
const otherContainer = await g.warmContainer(offer)
// shutdownContainer's own container: once it has shut itself down, the others' secrets still work.
const doomed = await g.warmContainer(offer)
const cluster = await app.db.selectFrom('cluster').select('id').where('region_code', '=', offer.region).executeTakeFirstOrThrow()

async function created (method: 'POST', url: string, payload: object, headers: Record<string, string> = bearer(admin.accessToken)) {
  const res = await app.inject({ method, url, payload, headers })
  if (res.statusCode >= 300) throw new Error(`setup: ${method} ${url} answered ${res.statusCode}: ${res.body}`)
  return res.json()
}
const partner = await created('POST', '/v1/admin/partners', { name: 'Fuzz partner' })
const partnerKey = await created('POST', `/v1/admin/partners/${partner.id}/keys`, { name: 'fuzz', scopes: ['partner:read'] })
const victimKey = await created('POST', `/v1/admin/partners/${partner.id}/keys`, { name: 'victim', scopes: ['partner:read'] })
const revokedKey = await created('POST', `/v1/admin/partners/${partner.id}/keys`, { name: 'revoked', scopes: ['partner:read'] })
await app.inject({ method: 'DELETE', url: `/v1/admin/partners/${partner.id}/keys/${revokedKey.id}`, headers: bearer(admin.accessToken) })
const host = await created('POST', '/v1/hosts/handshake', { instanceId: 'i-0f0f0f0f0f0f0f0f0', region: offer.region, bootstrapSecret }, {})
const otherHost = await created('POST', '/v1/hosts/handshake', { instanceId: 'i-0e0e0e0e0e0e0e0e0', region: offer.region, bootstrapSecret }, {})

// ---- Credentials: the proper one, and attacks on each scheme -----------------------------------------------------

const now = () => Math.floor(Date.now() / 1000)
const b64 = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url')
const adminClaims = JSON.parse(Buffer.from(admin.accessToken.split('.')[1]!, 'base64url').toString())
const kid = app.jwks.keys[0]!.kid
const signingKey = createPrivateKey(testKeys.privateKey)
const otherKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
function jwt (header: object, payload: object, key: KeyObject | null, hmacSecret?: string): string {
  const input = `${b64(header)}.${b64(payload)}`
  if (hmacSecret !== undefined) return `${input}.${createHmac('sha256', hmacSecret).update(input).digest('base64url')}`
  if (!key) return `${input}.`
  return `${input}.${sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' }).toString('base64url')}`
}
const claims = (extra: object = {}) => ({ ...adminClaims, iat: now(), exp: now() + 600, ...extra })
const es256 = { alg: 'ES256', typ: 'JWT', kid }
const [tokenHeader, , tokenSignature] = admin.accessToken.split('.')
const bearerAttacks: Array<(garbage: string) => string> = [
  (garbage) => garbage,
  () => `Bearer ${jwt(es256, claims({ iat: now() - 7200, exp: now() - 3600 }), signingKey)}`,
  () => `Bearer ${jwt({ alg: 'none', typ: 'JWT' }, claims(), null)}`,
  () => `Bearer ${jwt(es256, claims(), otherKey)}`,
  () => `Bearer ${jwt({ alg: 'HS256', typ: 'JWT', kid }, claims(), null, testKeys.publicKey)}`,
  () => `Bearer ${tokenHeader}.${b64({ ...adminClaims, scopes: [...adminClaims.scopes, 'root'] })}.${tokenSignature}`,
  () => `Bearer ${jwt(es256, claims({ iss: 'https://evil.example' }), signingKey)}`,
  () => `Bearer ${jwt(es256, claims({ aud: 'someone-else' }), signingKey)}`,
  () => `Bearer ${admin.accessToken.slice(0, -5)}`,
  () => `Bearer ${admin.accessToken}x`,
  () => `Bearer ${revoked.accessToken}`,
  () => `Bearer ${admin.accessToken} ${admin.accessToken}`,
  () => `Basic ${Buffer.from(`${admin.account.email}:${admin.account.password}`).toString('base64')}`,
  () => `Bearer ${jwt(es256, claims({ sid: undefined }), signingKey)}`
]
const secretAttacks: Record<string, Array<(garbage: string) => string>> = {
  containerSecret: [(g) => g, () => otherContainer.secret, () => warm.secret.slice(0, -1), () => ` ${warm.secret}`, () => warm.secret_hash],
  hostSecret: [(g) => g, () => otherHost.secret, () => host.secret.slice(0, -1), () => `${host.secret} `],
  partnerKey: [(g) => g, () => `${partnerKey.key}x`, () => partnerKey.key.slice(0, -3), () => revokedKey.key, () => `${partnerKey.key.split('_').slice(0, 2).join('_')}_${'A'.repeat(40)}`],
  metricsToken: [(g) => g, () => `Bearer ${metricsToken}x`, () => `Bearer ${metricsToken.slice(0, -1)}`, () => metricsToken, () => `Bearer ${admin.accessToken}`, () => `Basic ${metricsToken}`]
}
const authVariants = Math.max(bearerAttacks.length, ...Object.values(secretAttacks).map((a) => a.length))
const schemeHeader: Record<string, string> = { bearer: 'authorization', containerSecret: 'x-container-secret', hostSecret: 'x-host-secret', partnerKey: 'x-api-key', metricsToken: 'authorization' }
const noScopeToken = await g.token({ scopes: [] })

function properCredential (op: SpecOperation, scheme: string): string {
  switch (scheme) {
    case 'bearer': return `Bearer ${(selfUsers[op.operationId] ?? admin).accessToken}`
    case 'containerSecret': return op.operationId === 'shutdownContainer' ? doomed.secret : warm.secret
    case 'hostSecret': return host.secret
    case 'partnerKey': return partnerKey.key
    case 'metricsToken': return `Bearer ${metricsToken}`
  }
  throw new Error(`no credential for the scheme ${scheme}: teach test/fuzz/operations.test.ts about it`)
}

function attack (scheme: string, draft: Draft): string {
  const list = scheme === 'bearer' ? bearerAttacks : secretAttacks[scheme]!
  return list[draft.auth.variant % list.length]!(draft.auth.garbage)
}

function credentials (op: SpecOperation, draft: Draft): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {}
  for (const scheme of Object.keys(op.security[draft.auth.requirement] ?? {})) {
    const header = schemeHeader[scheme]!
    switch (draft.auth.mode) {
      case 'proper': out[header] = properCredential(op, scheme); break
      case 'none': break
      case 'garbage': out[header] = attack(scheme, draft); break
      case 'wrongScope': out[header] = scheme === 'bearer' ? `Bearer ${noScopeToken}` : attack(scheme, draft); break
      case 'duplicated': {
        const both = [properCredential(op, scheme), attack(scheme, draft)]
        out[header] = draft.auth.variant % 2 ? both : both.reverse()
      }
    }
  }
  return out
}

// ---- Operation-specific generation --------------------------------------------------------------------------

const signMe = 'SIGN-ME'
const arbitraries = new Arbitraries({
  pools: {
    appid: [offer.app],
    app: [offer.app],
    region: [offer.region],
    regioncode: [offer.region],
    containerid: [warm.id],
    container: [warm.id],
    'x-container-id': [warm.id],
    userid: [victim.account.id],
    user: [victim.account.id],
    partnerid: [partner.id],
    keyid: [victimKey.id],
    hostid: [host.hostId],
    clusterid: [cluster.id],
    email: [victim.account.email],
    password: [victim.account.password],
    currentpassword: [selfUsers.updateMe!.account.password],
    refreshtoken: [victim.refreshToken],
    plan: plans,
    provider: ['google_drive', 'dropbox'],
    'stripe-signature': [signMe],
    bootstrapsecret: [bootstrapSecret],
    // hasuraAuth takes the Authorization header as a parameter (it is public).
    authorization: [`Bearer ${admin.accessToken}`]
  },
  overrides: {
    // The window is fuzzed; waiting up to 60 s for running jobs (queued by other operations) is not.
    'setMaintenance.waitSeconds': fc.constantFrom(0, undefined),
    'shutdownContainer.containerId': fc.oneof(fc.constant(doomed.id), fc.uuid())
  }
})

const stripeTypes = ['customer.subscription.created', 'customer.subscription.updated', 'customer.subscription.deleted', 'invoice.paid', 'invoice.payment_failed',
  'checkout.session.completed', 'customer.deleted', 'something.unknown']
const validBodies: Record<string, fc.Arbitrary<Body>> = {
  // A Stripe event as Stripe sends it; the request is signed once its body is final (see `finish`).
  stripeWebhook: fc.tuple(fc.constantFrom(...stripeTypes), fc.dictionary(text(1, 12), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 }), fc.stringMatching(/^[A-Za-z0-9]{8,24}$/))
    .map(([type, object, id]) => ({ kind: 'json', value: stripeEvent(type, { id: `sub_${id}`, object: type.split('.')[0], customer: `cus_${id}`, metadata: {}, ...object }, { id: `evt_${id}` }), contentType: 'application/json' })),
  // A log: text, or gzip of it.
  uploadLog: fc.tuple(fc.oneof(text(1, 200), fc.constant('x'.repeat(100_000))), fc.boolean()).map(([log, zipped]): Body =>
    zipped ? { kind: 'bytes', bytes: gzipSync(log), contentType: 'application/gzip' } : { kind: 'bytes', bytes: Buffer.from(log), contentType: 'text/plain' })
}

/** Last touches once the body is final: a signature Stripe would have made for it. */
function finish (op: SpecOperation, req: BuiltRequest): BuiltRequest {
  if (op.operationId === 'stripeWebhook' && req.headers['stripe-signature'] === signMe) {
    const payload = req.payload?.toString('utf8') ?? ''
    return { ...req, headers: { ...req.headers, 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret: testWebhookSecret }) } }
  }
  return req
}

/**
 * The smallest request found for each bug the fuzzer found (all fixed: framework errors as problems, NUL and
 * lone surrogates and out-of-range integers as 400s, bodies on body-less operations declared 400/415, Stripe
 * payloads that are not events, setMaintenance in one transaction, Retry-After on every 503), run first
 * (fast-check `examples`) whatever the seed draws: regressions.
 */
const proper: Draft['auth'] = { mode: 'proper', requirement: 0, garbage: '', variant: 0 }
const draft = (fields: Partial<Draft>): Draft => ({ path: {}, query: [], headers: {}, auth: proper, body: { kind: 'none' }, notes: ['a known bug\'s reproduction'], ...fields })
const json = (text: string): Body => ({ kind: 'bytes', bytes: Buffer.from(text, 'utf8'), contentType: 'application/json' })
const reproductions: Record<string, Partial<Record<'refused' | 'any', Draft[]>>> = {
  getApp: { refused: [draft({ path: { appId: { value: '%zz', raw: true } } })] },
  getJob: { refused: [draft({ path: { jobId: { value: 'a'.repeat(201) } } })] },
  signUp: { any: [draft({ body: json('{"email":"nul@example.test","password":"a-long-unusual-passphrase","name":"a\\u0000b"}') })] },
  hostHeartbeat: { refused: [draft({ path: { hostId: { value: host.hostId } }, auth: { ...proper, mode: 'garbage', garbage: 'not-the-host-secret' }, body: json('{"totalMemoryKb":1e20}') })] },
  signOut: { any: [draft({ body: { kind: 'bytes', bytes: Buffer.from('<x/>'), contentType: 'application/xml' } })] },
  stripeWebhook: { any: [draft({ headers: { 'stripe-signature': signMe }, body: json('null') }), draft({ headers: { 'stripe-signature': signMe }, body: json('{}') })] },
  createPartner: { any: [draft({ body: json('{"name":"p\\ud800"}') })] },
  setMaintenance: { any: [draft({ body: json(`{"enabled":true,"region":"${offer.region}","message":"x\\ud800y","minutes":1}`) })] }
}

function bodyLimitOf (op: SpecOperation): number {
  if (typeof op.bodyLimit === 'number') return op.bodyLimit
  if (typeof op.bodyLimit === 'string') return op.bodyLimit.split('.').reduce<any>((node, key) => node?.[key], app.config) as number
  return app.config.http.bodyLimit
}

// ---- Checks ----------------------------------------------------------------------------------------------------

const oracle = new Oracle(bodyLimitOf)

/** A request of the run, printed by fast-check (as the request sent, not as the draft) when it fails. */
class Case {
  readonly refusal: string | null
  readonly request: BuiltRequest
  constructor (readonly op: SpecOperation, readonly draft: Draft) {
    this.refusal = oracle.refusal(op, draft)
    this.request = finish(op, buildRequest(op, draft, credentials(op, draft)))
  }

  [fc.toStringMethod] (): string {
    return `\n${describeRequest(this.request)}\n  mutations: ${this.draft.notes.join('; ') || 'none'} (credentials: ${this.draft.auth.mode})` +
      (this.refusal ? `\n  the contract refuses it: ${short(this.refusal, 200)}` : '')
  }
}

async function send (req: BuiltRequest): Promise<LightMyRequestResponse> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_resolve, reject) => { timer = setTimeout(() => reject(new Error('no answer within 15 s')), 15_000) })
  try {
    return await Promise.race([app.inject({ method: req.method as 'GET', url: req.url, headers: req.headers, ...(req.payload ? { payload: req.payload } : {}) }), timeout])
  } finally {
    clearTimeout(timer)
  }
}

function violations (op: SpecOperation, c: Case, res: LightMyRequestResponse): Violation[] {
  const found: Violation[] = []
  const status = res.statusCode
  const type = String(res.headers['content-type'] ?? '')
  let body: any
  try { body = JSON.parse(res.body) } catch { body = undefined }
  const answer = `${status} ${type} ${short(res.body, 400)}`
  if (status >= 500) {
    // A documented 503 (billing, Google, a storage provider or a maintenance window unavailable) is an answer.
    const documented = status === 503 && op.statuses.has('503') && ['unavailable', 'maintenance'].includes(body?.code)
    if (!documented) found.push({ kind: 'server error', detail: answer })
    // The spec's Unavailable response carries Retry-After.
    else if (res.headers['retry-after'] === undefined) found.push({ kind: 'no Retry-After', detail: answer })
  }
  if (status >= 400) {
    const problem = /^application\/problem\+json(;|$)/.test(type) && body && typeof body === 'object' && body.status === status && typeof body.code === 'string'
    if (!problem) found.push({ kind: 'not a problem', detail: answer })
  }
  if (c.refusal && status < 400) found.push({ kind: 'accepted', detail: `${answer} (expected a refusal: ${c.refusal})` })
  return found
}

// ---- Row counts ----------------------------------------------------------------------------------------------------

// Rows a refused request writes on purpose: the audit log records failed sign-ins and refresh-token reuse (401s).
const allowedOnRefusal: Record<string, string> = {
  audit_event: "action not in ('session.sign_in_failed', 'session.refresh_reuse')"
}
const tables = (await sql<{ table_name: string }>`select table_name from information_schema.tables
  where table_schema = 'public' and table_type = 'BASE TABLE' and table_name not like 'kysely\\_%' order by table_name`.execute(app.db)).rows.map((r) => r.table_name)
const countSql = `select ${tables.map((name) => `(select count(*) from "${name}"${allowedOnRefusal[name] ? ` where ${allowedOnRefusal[name]}` : ''})::int as "${name}"`).join(', ')}`
// A connection of our own and a prepared statement: the counts are taken after every request of the any phase.
const counter = new pg.Client({ connectionString: app.config.db.url! })
counter.on('error', () => {})
await counter.connect()
t.teardown(() => counter.end().catch(() => {}))
async function counts (): Promise<Record<string, number>> {
  return (await counter.query<Record<string, number>>({ name: 'fuzz-counts', text: countSql })).rows[0]!
}
function changed (before: Record<string, number>, after: Record<string, number>): string[] {
  return tables.filter((name) => before[name] !== after[name]).map((name) => `${name}: ${before[name]} → ${after[name]}`)
}

// ---- The run ----------------------------------------------------------------------------------------------------

const operations = (await loadOperations(specPath)).filter((op) => only.size === 0 || only.has(op.operationId))
t.ok(operations.length > 0, `the spec has operations to fuzz${only.size ? ` (FUZZ_ONLY=${[...only].join(',')})` : ''}`)

/**
 * One phase of one operation. Rows: the refused phase compares the counts before and after the whole batch
 * (every request in it must be refused). The any phase takes the counts after each request (one query): an
 * accepted request sets the new baseline, a refused one must leave them as they were, and is named if not.
 */
async function fuzzPhase (t: Test, op: SpecOperation, phase: 'refused' | 'any', arb: fc.Arbitrary<Draft>) {
  const hits = new Map<KnownIssue, { count: number, example: string }>()
  const before = await counts()
  let last = before
  const statuses = new Map<number, number>()
  const property = fc.asyncProperty(arb.map((d) => new Case(op, d)), async (c) => {
    const res = await send(c.request)
    statuses.set(res.statusCode, (statuses.get(res.statusCode) ?? 0) + 1)
    const found = violations(op, c, res)
    if (phase === 'any') {
      const now = await counts()
      const written = changed(last, now)
      if (res.statusCode >= 400 && written.length) found.push({ kind: 'rows written', detail: written.join(', ') })
      last = now
    }
    const unknown: Violation[] = []
    for (const v of found) {
      const known = knownIssues.find((k) => k.match(op, c.request, res, v))
      if (!known) { unknown.push(v); continue }
      const hit = hits.get(known) ?? { count: 0, example: `${c[fc.toStringMethod]()}\n  ${v.kind}: ${v.detail}${v.kind === 'rows written' ? ` (answered ${res.statusCode})` : ''}` }
      hit.count++
      hits.set(known, hit)
    }
    if (unknown.length) throw new Error(unknown.map((v) => `${v.kind}: ${v.detail}`).join('\n'))
  })
  const opSeed = seedOf(op.operationId, phase)
  const examples = (reproductions[op.operationId]?.[phase] ?? []).map((d): [Case] => [new Case(op, d)])
  const details = await fc.check(property, { seed: opSeed, numRuns: runs + examples.length, examples })
    .catch((err: Error) => ({ failed: true, errorInstance: err, counterexample: null, counterexamplePath: null }))
  const what = `${runs} ${phase === 'refused' ? 'refused' : 'fuzzed'} requests${examples.length ? ` and ${examples.length} reproduction(s)` : ''}`
  if (details.failed) {
    t.fail(`${op.operationId} (${phase}): ${details.errorInstance instanceof Error ? details.errorInstance.message : String(details.errorInstance)}\n` +
      `request:${String(details.counterexample?.[0] && (details.counterexample[0] as Case)[fc.toStringMethod]())}\n` +
      `replay: FUZZ_SEED=${seed} FUZZ_ONLY=${op.operationId} FUZZ_RUNS=${runs} npm run fuzz (fast-check seed ${opSeed}, path ${details.counterexamplePath})`)
  } else if (phase === 'refused') {
    t.pass(`${what}: every one refused with a problem (4xx), never a 5xx`)
  } else {
    t.pass(`${what}: no 5xx, a problem for every 4xx, no row written by a refused one`)
  }
  t.comment(`${op.operationId} (${phase}) answers: ${[...statuses].sort(([a], [b]) => a - b).map(([status, n]) => `${status}×${n}`).join(' ')}`)
  for (const [issue, hit] of hits) t.fail(`${issue.id}: ${hit.count} request(s), e.g.${hit.example}`, { todo: issue.reason })
  if (phase === 'refused') {
    const written = changed(before, await counts())
    const v: Violation = { kind: 'rows written', detail: written.join(', ') }
    const known = written.length > 0 && knownIssues.find((k) => k.match(op, { method: op.method, url: op.path, headers: {} }, null, v))
    if (written.length === 0) t.pass('nothing written by the refused requests (row counts of every table)')
    else if (known) t.fail(`${known.id}: refused requests wrote rows: ${v.detail}`, { todo: known.reason })
    else t.fail(`refused requests of ${op.operationId} wrote rows: ${v.detail} (replay: FUZZ_SEED=${seed} FUZZ_ONLY=${op.operationId} FUZZ_RUNS=${runs} FUZZ_PHASE=refused npm run fuzz)`)
  }
}

for (const op of operations) {
  const { base, refusing, any } = operationArbitraries(op, arbitraries, { validBody: validBodies[op.operationId], bodyLimit: bodyLimitOf(op), authVariants })
  t.test(`${op.operationId} › fuzz › malformed requests are problems, never 5xx, and write nothing`, async (t) => {
    if (phases.includes('refused')) {
      if (refusing.length === 0) {
        t.comment(`${op.operationId}: no parameter, body or credential to break (public and without input): only the "any" phase`)
      } else {
        const arb = fc.tuple(base, fc.array(fc.oneof(...refusing), { minLength: 1, maxLength: 2 })).map(applyMutations)
          .filter((d) => oracle.refusal(op, d) !== null)
        await fuzzPhase(t, op, 'refused', arb)
      }
    }
    if (phases.includes('any')) {
      // Two runs in five unmutated: valid-ish requests that get past validation into the handlers.
      const mutations = fc.oneof({ weight: 2, arbitrary: fc.constant([]) }, { weight: 3, arbitrary: fc.array(fc.oneof(...any), { minLength: 1, maxLength: 3 }) })
      const arb = fc.tuple(base, mutations).map(applyMutations)
      await fuzzPhase(t, op, 'any', arb)
    }
  })
}
