// What `npm run bench` measures. A feature adds its scenario here: bench/run.ts runs every entry against
// ours and (unless `bare: false`) against bench/bare.ts, in the same run, and judges it.

import pg from 'pg'
import { createUsers, tokensFor } from './assignment.js'

export type Headers = Record<string, string>

/** What a `prepare` may use besides the server: ours' database and the key its tokens are signed with. */
export interface BenchContext { databaseUrl: string, privateKey: string }

export interface Scenario {
  /** Row label of the table. */
  name: string
  /** GET by default. */
  method?: 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE'
  path: string
  headers?: Headers
  /** Request body; an object is sent as JSON (with content-type application/json). */
  body?: string | Record<string, unknown>
  /** Content type of a string body. */
  contentType?: string
  /** Minimum req/s of ours (an absolute target, besides the ratio). */
  minReqPerSec?: number
  /**
   * Runs once per server before any load, against its base URL (`http://127.0.0.1:<port>`), and returns
   * headers to add to every request: an ETag read from a first answer, a token, ... A `:path` entry
   * replaces `path` (a route with an id only the preparation knows); `:variants` (JSON of
   * `[{ path, headers }]`) makes the requests rotate over them.
   */
  prepare?: (baseUrl: string, bench: BenchContext) => Promise<Headers>
  /** The status every response must have: any other status (or a socket error or timeout) fails the row. */
  expectStatus: number
  /** Minimum ours/bare ratio of req/s; null measures and prints only. */
  target: number | null
  /** bench/bare.ts serves an equivalent route (default true); false measures ours alone. */
  bare?: boolean
  /** The bare route to compare with, when it differs from `path`. */
  bareAs?: string
}

/** `prepare` for conditional requests: If-None-Match set to the ETag of a first GET of `path`. */
export function ifNoneMatch (path: string): (baseUrl: string) => Promise<Headers> {
  return async (baseUrl) => {
    const res = await fetch(new URL(path, baseUrl))
    await res.arrayBuffer()
    const etag = res.headers.get('etag')
    if (res.status !== 200 || !etag) throw new Error(`GET ${path} on ${baseUrl} answered ${res.status}${etag ? '' : ' without an ETag'}`)
    return { 'if-none-match': etag }
  }
}

const benchUser = { email: 'bench@example.test', password: 'correct-horse-battery-staple', name: 'Bench User' }

/** `prepare` for signed-in scenarios: an account (created once) and a bearer token for it. */
function signedIn (): (baseUrl: string) => Promise<Headers> {
  return async (baseUrl) => {
    const post = (path: string, body: object) => fetch(new URL(path, baseUrl), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) })
    await (await post('/v1/accounts', benchUser)).arrayBuffer()
    const res = await post('/v1/sessions', { email: benchUser.email, password: benchUser.password })
    const pair = await res.json() as { accessToken?: string }
    if (!pair.accessToken) throw new Error(`sign-in for the bench answered ${res.status}`)
    return { authorization: `Bearer ${pair.accessToken}` }
  }
}

/**
 * `prepare` for per-user limited routes: `n` accounts written into ours' database and a token for each
 * (signed with ours' key: argon2 sign-ins would take minutes), rotated over by the requests (`:variants`),
 * so each user stays under its limit as real clients do.
 */
function manyUsers (n: number, path: string): (baseUrl: string, bench: BenchContext) => Promise<Headers> {
  return async (_baseUrl, bench) => {
    const db = new pg.Client({ connectionString: bench.databaseUrl })
    await db.connect()
    try {
      const tokens = await tokensFor(bench.privateKey, await createUsers(db, n, `scenario-${Date.now()}`))
      return { ':variants': JSON.stringify(tokens.map((token) => ({ path, headers: { authorization: `Bearer ${token}` } }))) }
    } finally {
      await db.end()
    }
  }
}

/** The bootstrap secret bench/run.ts gives ours, for the host-agent scenario. */
export const benchBootstrapSecret = 'bench-bootstrap-secret-0123456789'

/**
 * `prepare` for the host agent: 500 hosts shake hands; the heartbeats rotate over them (`:variants`), as a
 * fleet does (one host beating 3,000 times a second would only measure its row lock).
 */
async function hostAgents (baseUrl: string): Promise<Headers> {
  const variants = []
  for (let i = 0; i < 500; i++) {
    const res = await fetch(new URL('/v1/hosts/handshake', baseUrl), {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-forwarded-for': `10.200.${i >> 8}.${i & 255}` },
      body: JSON.stringify({ instanceId: `i-0beec${i.toString(16).padStart(11, '0')}`, region: 'us-east-1', bootstrapSecret: benchBootstrapSecret })
    })
    const body = await res.json() as { hostId?: string, secret?: string }
    if (!body.hostId || !body.secret) throw new Error(`the bench handshake answered ${res.status}`)
    variants.push({ path: `/v1/hosts/${body.hostId}/heartbeats`, headers: { 'x-host-secret': body.secret } })
  }
  return { ':variants': JSON.stringify(variants) }
}

export const scenarios: Scenario[] = [
  { name: 'healthz', path: '/healthz', expectStatus: 200, target: null },
  { name: 'regions 200', path: '/v1/regions', expectStatus: 200, target: 0.6 },
  { name: 'regions 304', path: '/v1/regions', prepare: ifNoneMatch('/v1/regions'), expectStatus: 304, target: 0.7 },
  // JWT verify, the revocation check in Redis, one indexed select. Bare Fastify answers a constant.
  { name: 'users/me', path: '/v1/users/me', prepare: signedIn(), expectStatus: 200, target: 0.35, bareAs: '/healthz' },
  // The host agent's heartbeat: the host row read (secret check) and updated.
  { name: 'host heartbeat', method: 'POST', path: '/v1/hosts/{id}/heartbeats', prepare: hostAgents, body: { totalMemoryKb: 16337000, freeMemoryKb: 9120000, availableMemoryKb: 12000000 }, expectStatus: 204, target: null, minReqPerSec: 10_000, bareAs: '/v1/hosts/bench/heartbeats' },
  // A 10 KB client log: gzipped and spooled in PostgreSQL with its job (the upload to S3 is measured after the table).
  // Uploads are limited to 60 a minute per user: 50,000 users, each far below it.
  { name: 'log upload (10 KB)', method: 'POST', path: '/v1/logs?sender=client', prepare: manyUsers(50_000, '/v1/logs?sender=client'), body: 'log line of a streaming session\n'.repeat(320), contentType: 'text/plain', expectStatus: 202, target: null, bareAs: '/v1/logs' },
  // argon2id by design (19 MiB, 2 passes on the libuv pool): printed, not compared.
  { name: 'sign-in (argon2)', method: 'POST', path: '/v1/sessions', prepare: async (baseUrl) => { await signedIn()(baseUrl); return {} }, body: { email: benchUser.email, password: benchUser.password }, expectStatus: 200, target: null, bare: false }
]

/** Ours only: from spawn to the first 200 on /readyz (fresh PostgreSQL database: migrations and seed included). */
export const startupTargetMs = 1000
/** Ours only: VmRSS after the warm-up load, once idle. */
export const idleRssTargetMb = 120

/**
 * The warm-pool assignment bench (bench/assignment.ts): assignments per second at the run's connections as
 * fast as they go, and p99 at a paced rate.
 */
export const assignment = { minPerSec: 3000, pacedPerSec: 1500, maxP99Ms: 25 }
