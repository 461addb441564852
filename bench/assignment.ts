// The warm-pool assignment bench (issue 5), run by bench/run.ts against ours after the other scenarios:
//
// 1. Race: 300 users ask for the same app at once against 100 warm containers. Exactly 100 must get one
//    (201), each container held by one user, and the other 200 must be queued (202, a start job each).
// 2. Throughput: POST /v1/containers at N connections for the run's duration, every request another user
//    with a fresh Idempotency-Key, against a warm pool larger than the run can drain: assignments per second
//    and p99, compared with bare Fastify answering a constant 201. Then the same invariant is checked.
// 3. Paced: the same at a fixed rate over the same N connections (bench/run.ts asks for the target rate,
//    1,000 a second): p50 and p99 at that load. The run above measures latency at saturation, where N busy
//    connections make the mean N / throughput (Little's law) whatever the server does.
//
// Users and containers are written straight into the bench database (accounts without passwords, tokens
// signed with the server's key): argon2 sign-ins would measure argon2, not assignment.
import { randomUUID } from 'node:crypto'
import { Agent, request as httpRequest } from 'node:http'
import { importPKCS8, SignJWT } from 'jose'
import pg from 'pg'
import { keyIdOf } from '../plugins/auth.js'
import { load, type PreparedRequest } from './load.js'

export interface AssignmentBenchOptions {
  ours: string
  bare: string
  databaseUrl: string
  privateKey: string
  connections: number
  duration: number
  /** Extra per-request headers (X-Forwarded-For spreading, as the other scenarios). */
  spread: (i: number) => Record<string, string>
  /** false: the throughput part only (a second run against the same database). */
  race?: boolean
  /** false: ours only (a repeated round compares ours with ours). */
  withBare?: boolean
  /** Also a run paced at this many requests a second over the same connections (latency at a given load). */
  pacedRate?: number
  log: (line: string) => void
}

export interface AssignmentBenchResult {
  race: { users: number, warm: number, assigned: number, queued: number, other: Record<string, number>, distinctHolders: number, pass: boolean }
  throughput: { ours: { reqPerSec: number, p50: number, p99: number, statuses: Record<string, number> }, bare: { reqPerSec: number, p99: number }, ratio: number, assignedPerSec: number }
  /** The paced run: what it asked for, what it got, and its latency. */
  paced: { rate: number, reqPerSec: number, p50: number, p99: number, statuses: Record<string, number> } | null
  invariant: { doubleHeld: number, usersWithTwo: number, pass: boolean }
}

const app = 'chrome'
const region = 'us-east-1'

/**
 * Access tokens as the server signs them: its key id (the RFC 7638 thumbprint plugins/auth.ts names it by),
 * and a lifetime within the server's default (900 s): the server refuses a token without its kid or living
 * longer than its configured lifetime (issue 18). The accounts must exist (a token of a deleted one fails).
 */
export async function signAccessTokens (privateKey: string, claims: Array<{ sub: string, role: string, scopes: string[] }>): Promise<string[]> {
  const key = await importPKCS8(privateKey, 'ES256')
  const kid = keyIdOf(privateKey)
  return Promise.all(claims.map(({ sub, role, scopes }) => new SignJWT({ role, scopes, sid: randomUUID() })
    .setProtectedHeader({ alg: 'ES256', kid }).setSubject(sub).setIssuer('https://api.fractal.co').setAudience('fractal')
    .setIssuedAt().setExpirationTime('10m').sign(key)))
}

export function tokensFor (privateKey: string, userIds: string[]): Promise<string[]> {
  return signAccessTokens(privateKey, userIds.map((sub) => ({ sub, role: 'user', scopes: ['account', 'containers'] })))
}

export async function createUsers (db: pg.Client, n: number, tag: string): Promise<string[]> {
  const { rows } = await db.query<{ id: string }>(
    `insert into account (email, name, email_verified_at)
     select 'bench-' || $2 || '-' || g || '@example.test', 'Bench ' || g, now() from generate_series(1, $1) g returning id`, [n, tag])
  return rows.map((r) => r.id)
}

export async function createWarm (db: pg.Client, n: number): Promise<void> {
  await db.query(
    `insert into container (app_id, region_code, user_id, state, aes_key, secret_hash, task_arn, host_ip, port_32262, port_32263, port_32273, last_ping_at)
     select $2, $3, null, 'available', md5(g::text), md5('s' || g), 'arn:aws:ecs:bench:task/' || g, '198.51.100.1', 40000, 40001, 40002, now()
     from generate_series(1, $1) g`, [n, app, region])
}

async function invariant (db: pg.Client) {
  const doubleHeld = (await db.query('select count(*)::int n from (select id from container group by id having count(distinct user_id) > 1) x')).rows[0].n as number
  const usersWithTwo = (await db.query(
    `select count(*)::int n from (select user_id from container where app_id = $1 and user_id is not null
       and state in ('creating', 'starting', 'available', 'in_use') group by user_id having count(*) > 1) x`, [app])).rows[0].n as number
  return { doubleHeld, usersWithTwo, pass: doubleHeld === 0 && usersWithTwo === 0 }
}

/**
 * An open-model load: request i is due at start + i / rate, whatever the answers before it, over at most
 * `connections` keep-alive connections (a request due while all are busy waits for one). Latency counts
 * from when a request was due, so a server falling behind shows in it (no coordinated omission). autocannon's
 * own rate limit cannot do this: each connection sends its quota back to back at the start of each second.
 */
export async function pacedLoad (o: {
  url: string,
  rate: number,
  duration: number,
  connections: number,
  next: () => { headers: Record<string, string>, body: string }
}): Promise<{ reqPerSec: number, p50: number, p99: number, statuses: Record<string, number> }> {
  const target = new URL(o.url)
  const agent = new Agent({ keepAlive: true, maxSockets: o.connections })
  const latencies: number[] = []
  const statuses: Record<string, number> = {}
  const total = Math.round(o.rate * o.duration)
  const started = performance.now()
  const send = (due: number) => new Promise<void>((resolve) => {
    const { headers, body } = o.next()
    const req = httpRequest({ agent, host: target.hostname, port: target.port, path: target.pathname, method: 'POST', headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume()
      res.on('end', () => {
        latencies.push(performance.now() - due)
        statuses[String(res.statusCode)] = (statuses[String(res.statusCode)] ?? 0) + 1
        resolve()
      })
    })
    req.on('error', () => {
      statuses.error = (statuses.error ?? 0) + 1
      resolve()
    })
    req.end(body)
  })
  const inFlight: Array<Promise<void>> = []
  let sent = 0
  while (sent < total) {
    const now = performance.now()
    for (; sent < total && started + (sent * 1000) / o.rate <= now; sent++) inFlight.push(send(started + (sent * 1000) / o.rate))
    await new Promise((resolve) => setTimeout(resolve, 1))
  }
  await Promise.all(inFlight)
  const elapsed = (performance.now() - started) / 1000
  agent.destroy()
  latencies.sort((a, b) => a - b)
  const at = (q: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.floor(latencies.length * q))] ?? 0)
  return { reqPerSec: latencies.length / elapsed, p50: at(0.5), p99: at(0.99), statuses }
}

export async function assignmentBench (o: AssignmentBenchOptions): Promise<AssignmentBenchResult> {
  const db = new pg.Client({ connectionString: o.databaseUrl })
  await db.connect()
  try {
    // Nothing refills or reaps during the bench (the server runs without a worker anyway).
    await db.query('update app_region set warm_pool_target = 0')

    // 1. The race (only on a first run: a second finds the warm containers the first left).
    let race: AssignmentBenchResult['race'] = { users: 0, warm: 0, assigned: 0, queued: 0, other: {}, distinctHolders: 0, pass: true }
    if (o.race !== false) {
      o.log('assignment race: 300 users, 100 warm containers')
      const raceUsers = await createUsers(db, 300, `race-${Date.now()}`)
      await createWarm(db, 100)
      const raceTokens = await tokensFor(o.privateKey, raceUsers)
      const answers = await Promise.all(raceTokens.map(async (token, i) => {
        const res = await fetch(`${o.ours}/v1/containers`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'idempotency-key': randomUUID(), ...o.spread(i) },
          body: JSON.stringify({ app, region })
        })
        await res.arrayBuffer()
        return res.status
      }))
      const count = (s: number) => answers.filter((a) => a === s).length
      const other = Object.fromEntries([...new Set(answers.filter((a) => a !== 201 && a !== 202))].map((s) => [String(s), count(s)]))
      const holders = (await db.query(
        "select count(distinct user_id)::int n, count(*)::int c from container where app_id = $1 and state = 'in_use' and user_id = any($2::uuid[])", [app, raceUsers])).rows[0]
      race = {
        users: 300,
        warm: 100,
        assigned: count(201),
        queued: count(202),
        other,
        distinctHolders: holders.n as number,
        pass: count(201) === 100 && count(202) === 200 && holders.n === 100 && holders.c === 100
      }
      o.log(`race: ${race.assigned} assigned, ${race.queued} queued, ${JSON.stringify(other)} other, ${race.distinctHolders} distinct holders`)
    }

    // 2. Throughput. More users and warm containers than the runs can use up at 5,000 a second.
    const supply = Math.max(5000, Math.ceil(o.duration * (5000 + (o.pacedRate ?? 0))))
    o.log(`assignment throughput: ${supply} users and warm containers`)
    const users = await createUsers(db, supply, `load-${Date.now()}`)
    await createWarm(db, supply)
    const tokens = await tokensFor(o.privateKey, users)
    // Every request another user with a fresh Idempotency-Key, formatted before the run (bench/load.ts).
    const requests: PreparedRequest[] = tokens.map((token, i) => ({
      method: 'POST',
      path: '/v1/containers',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${token}`, 'idempotency-key': randomUUID(), ...o.spread(i) },
      body: JSON.stringify({ app, region })
    }))
    let next = 0
    const heldBy = async (ids: string[]) => (await db.query<{ n: number }>(
      "select count(*)::int n from container where app_id = $1 and state = 'in_use' and user_id = any($2::uuid[])", [app, ids])).rows[0]!.n
    const bareResult = o.withBare === false ? null : await load(o.bare, requests, { connections: o.connections, duration: o.duration })
    const oursResult = await load(o.ours, requests, { connections: o.connections, duration: o.duration })
    // wrk counts 2xx/3xx against 4xx/5xx only: the assignments are counted in the database.
    const assigned = await heldBy(users)
    next = Math.ceil(oursResult.reqPerSec * o.duration) + 100
    const statuses = { ...oursResult.statuses, 'in_use after the run': assigned }
    const throughput = {
      ours: { reqPerSec: oursResult.reqPerSec, p50: oursResult.p50, p99: oursResult.p99, statuses },
      bare: { reqPerSec: bareResult?.reqPerSec ?? 0, p99: bareResult?.p99 ?? 0 },
      ratio: bareResult ? oursResult.reqPerSec / Math.max(1, bareResult.reqPerSec) : 0,
      assignedPerSec: assigned / o.duration
    }
    o.log(`throughput: ours ${Math.round(throughput.ours.reqPerSec)} req/s, ${Math.round(throughput.assignedPerSec)} assigned/s (p50 ${throughput.ours.p50} ms, p99 ${throughput.ours.p99} ms, ${JSON.stringify(statuses)})${bareResult ? `, bare ${Math.round(throughput.bare.reqPerSec)} req/s` : ''}`)
    // 3. The same, paced: the latency at a given rate, where the run above measures it at saturation (with
    //    N connections always busy, the mean latency is N / throughput whatever the server does).
    let paced: AssignmentBenchResult['paced'] = null
    if (o.pacedRate) {
      const result = await pacedLoad({
        url: `${o.ours}/v1/containers`,
        rate: o.pacedRate,
        duration: o.duration,
        connections: o.connections,
        next: () => ({
          headers: { 'content-type': 'application/json', authorization: `Bearer ${tokens[next++ % tokens.length]}`, 'idempotency-key': randomUUID(), ...o.spread(next) },
          body: JSON.stringify({ app, region })
        })
      })
      paced = { rate: o.pacedRate, ...result }
      o.log(`paced at ${o.pacedRate}/s: ${Math.round(paced.reqPerSec)} req/s, p50 ${paced.p50} ms, p99 ${paced.p99} ms, ${JSON.stringify(paced.statuses)}`)
    }
    return { race, throughput, paced, invariant: await invariant(db) }
  } finally {
    await db.end()
  }
}
