// `npm run soak`: ours (dist/server.js on a fresh PostgreSQL database, with Redis) under a steady mix for
// SOAK_MINUTES: public reads, signed-in reads, warm-pool assignments, container pings and host heartbeats.
// After the warm-up, the server's VmRSS is sampled every 5 s. Targets: RSS flat within 10 % (the median of
// the last minute against the lowest minute's after the warm-up) and an error rate of 0 (any
// status other than the expected one, a socket error or a timeout is an error). Prints a report, writes it
// to bench/soak.md, exits 1 when a target is missed.
//
// Environment:
//   SOAK_MINUTES     measured minutes after the warm-up (10)
//   SOAK_WARMUP      seconds of the same load before measuring (60)
//   SOAK_RATE        requests a second, all kinds together (400): a steady load, not a throughput test
//   SOAK_CONCURRENCY requests in flight at most (50)
//   DATABASE_URL, REDIS_URL as for `npm run bench`
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import { writeFile } from 'node:fs/promises'
import os from 'node:os'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { createUsers, createWarm, tokensFor } from './assignment.js'
import { envNumber, formatInt, formatMb, formatMs, log, machine, markdownTable, nextClientAddress, rssMb, runMain, setUpOurs, startServer } from './harness.js'
import { benchBootstrapSecret } from './scenarios.js'

const settings = {
  minutes: envNumber('SOAK_MINUTES', 10, 0.1),
  warmupS: envNumber('SOAK_WARMUP', 60, 0),
  rate: envNumber('SOAK_RATE', 400, 1),
  concurrency: Math.round(envNumber('SOAK_CONCURRENCY', 50, 1)),
  databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres',
  redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379'
}
const reportPath = fileURLToPath(new URL('soak.md', import.meta.url))
const rssTargetPct = 10
const sampleEveryMs = 5000
const requestTimeoutMs = 10_000

interface Call { path: string, method?: string, headers?: Record<string, string>, body?: unknown }
interface Action {
  name: string
  /** Share of the requests. */
  weight: number
  expect: number
  next (): Call
}

interface Tally { ok: number, errors: Map<string, number>, latencies: number[] }

const percentile = (sorted: number[], p: number) => sorted.length === 0 ? 0 : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!
const median = (values: number[]) => percentile([...values].sort((a, b) => a - b), 0.5)

/** The fixtures of the mix, written into the bench database and through the API. */
async function fixtures (baseUrl: string, databaseUrl: string, privateKey: string, assignments: number): Promise<Action[]> {
  const db = new pg.Client({ connectionString: databaseUrl })
  await db.connect()
  try {
    // Nothing refills the pool meanwhile: the supply below outlasts the run.
    await db.query('update app_region set warm_pool_target = 0')
    const assignees = await createUsers(db, assignments, `soak-${Date.now()}`)
    await createWarm(db, assignments)
    const assigneeTokens = await tokensFor(privateKey, assignees)

    const readers = await tokensFor(privateKey, await createUsers(db, 50, `soak-readers-${Date.now()}`))

    // 100 streaming containers in use, each with its own secret, pinging as the agent in them does.
    const holders = await createUsers(db, 100, `soak-holders-${Date.now()}`)
    const secrets = holders.map(() => randomBytes(24).toString('base64url'))
    const { rows: containers } = await db.query<{ id: string }>(
      `insert into container (app_id, region_code, user_id, state, aes_key, secret_hash, task_arn, host_ip, port_32262, port_32263, port_32273, last_ping_at)
       select 'chrome', 'us-east-1', u, 'in_use', md5(u::text), h, 'arn:aws:ecs:soak:task/' || u, '198.51.100.2', 40000, 40001, 40002, now()
       from unnest($1::uuid[], $2::text[]) as t(u, h) returning id`,
      [holders, secrets.map((s) => createHash('sha256').update(s).digest('base64url'))])

    // 100 hosts shake hands; their heartbeats rotate.
    const hosts: Array<{ id: string, secret: string }> = []
    for (let i = 0; i < 100; i++) {
      const res = await fetch(new URL('/v1/hosts/handshake', baseUrl), {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-forwarded-for': nextClientAddress() },
        body: JSON.stringify({ instanceId: `i-0d0a${i.toString(16).padStart(12, '0')}`, region: 'us-east-1', bootstrapSecret: benchBootstrapSecret })
      })
      const body = await res.json() as { hostId?: string, secret?: string }
      if (!body.hostId || !body.secret) throw new Error(`the soak handshake answered ${res.status}`)
      hosts.push({ id: body.hostId, secret: body.secret })
    }

    let r = 0
    let a = 0
    let p = 0
    let h = 0
    return [
      { name: 'GET /v1/regions', weight: 25, expect: 200, next: () => ({ path: '/v1/regions' }) },
      { name: 'GET /v1/apps', weight: 15, expect: 200, next: () => ({ path: '/v1/apps?limit=20' }) },
      { name: 'GET /v1/users/me', weight: 15, expect: 200, next: () => ({ path: '/v1/users/me', headers: { authorization: `Bearer ${readers[r++ % readers.length]}` } }) },
      {
        name: 'POST /v1/containers (warm)',
        weight: 5,
        expect: 201,
        next: () => ({
          path: '/v1/containers',
          method: 'POST',
          headers: { authorization: `Bearer ${assigneeTokens[a++ % assigneeTokens.length]}`, 'idempotency-key': randomUUID() },
          body: { app: 'chrome', region: 'us-east-1' }
        })
      },
      {
        name: 'POST /v1/containers/{id}/ping',
        weight: 20,
        expect: 204,
        next: () => {
          const i = p++ % containers.length
          return { path: `/v1/containers/${containers[i]!.id}/ping`, method: 'POST', headers: { 'x-container-secret': secrets[i]! }, body: { available: false } }
        }
      },
      {
        name: 'POST /v1/hosts/{id}/heartbeats',
        weight: 20,
        expect: 204,
        next: () => {
          const host = hosts[h++ % hosts.length]!
          return { path: `/v1/hosts/${host.id}/heartbeats`, method: 'POST', headers: { 'x-host-secret': host.secret }, body: { totalMemoryKb: 16337000, freeMemoryKb: 9120000, availableMemoryKb: 12000000 } }
        }
      }
    ]
  } finally {
    await db.end()
  }
}

/** The mix at a steady rate: request i is sent at start + i / rate (or as soon as a slot frees up). */
async function drive (baseUrl: string, actions: Action[], until: number, tallies: Map<string, Tally> | null): Promise<number> {
  const total = actions.reduce((sum, x) => sum + x.weight, 0)
  // A fixed interleaving of the kinds by weight (smooth weighted round robin), repeated.
  const order: Action[] = []
  const credit = actions.map(() => 0)
  for (let i = 0; i < total; i++) {
    actions.forEach((x, k) => { credit[k]! += x.weight })
    const k = credit.indexOf(Math.max(...credit))
    credit[k]! -= total
    order.push(actions[k]!)
  }
  const started = performance.now()
  let issued = 0
  await Promise.all(Array.from({ length: settings.concurrency }, async () => {
    for (;;) {
      const i = issued++
      const at = started + i * 1000 / settings.rate
      if (at >= until) return
      const wait = at - performance.now()
      if (wait > 0) await sleep(wait)
      const action = order[i % order.length]!
      const call = action.next()
      const t0 = performance.now()
      let outcome: string
      try {
        const res = await fetch(baseUrl + call.path, {
          method: call.method ?? 'GET',
          headers: { ...(call.body === undefined ? {} : { 'content-type': 'application/json' }), 'x-forwarded-for': nextClientAddress(), ...call.headers },
          ...(call.body === undefined ? {} : { body: JSON.stringify(call.body) }),
          signal: AbortSignal.timeout(requestTimeoutMs)
        })
        await res.arrayBuffer()
        outcome = String(res.status)
      } catch (err) {
        outcome = (err as Error).name === 'TimeoutError' ? 'timeout' : `error ${(err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message}`
      }
      if (!tallies) continue
      const tally: Tally = tallies.get(action.name) ?? { ok: 0, errors: new Map(), latencies: [] }
      tallies.set(action.name, tally)
      tally.latencies.push(performance.now() - t0)
      if (outcome === String(action.expect)) tally.ok++
      else tally.errors.set(outcome, (tally.errors.get(outcome) ?? 0) + 1)
    }
  }))
  return issued
}

async function main (): Promise<boolean> {
  const loadAtStart = os.loadavg()
  const measuredMs = settings.minutes * 60_000
  log(`soak: ${settings.minutes} min after ${settings.warmupS} s of warm-up, ${settings.rate} req/s, ${settings.concurrency} in flight at most`)
  const { databaseUrl, keys, env } = await setUpOurs(settings)
  const ours = await startServer('ours', ['dist/server.js'], { ...env, TRUST_PROXY: '127.0.0.1', HOST_BOOTSTRAP_SECRET: benchBootstrapSecret }, '/readyz')
  const rssAtReady = await rssMb(ours.child)
  log(`ours ready in ${Math.round(ours.readyMs)} ms, RSS ${formatMb(rssAtReady)} MB`)

  // Enough warm containers and fresh users for every assignment of the run (5 % of the requests), and some.
  const assignments = Math.ceil((settings.warmupS + measuredMs / 1000) * settings.rate * 0.05 * 1.2) + 100
  const actions = await fixtures(ours.child.baseUrl, databaseUrl.href, keys.privateKey, assignments)

  if (settings.warmupS > 0) {
    log(`warm-up: ${settings.warmupS} s`)
    await drive(ours.child.baseUrl, actions, performance.now() + settings.warmupS * 1000, null)
  }
  const rssAfterWarmup = await rssMb(ours.child)
  const samples: Array<{ atS: number, rss: number }> = []
  const measureStart = performance.now()
  const sampler = setInterval(() => {
    rssMb(ours.child).then((rss) => {
      if (rss === null) return
      const atS = (performance.now() - measureStart) / 1000
      samples.push({ atS, rss })
      if (samples.length % 12 === 0) log(`${(atS / 60).toFixed(1)} min: RSS ${rss.toFixed(1)} MB`)
    }, () => {})
  }, sampleEveryMs)
  const tallies = new Map<string, Tally>()
  const sent = await drive(ours.child.baseUrl, actions, measureStart + measuredMs, tallies)
  clearInterval(sampler)
  const elapsedS = (performance.now() - measureStart) / 1000
  if (ours.child.ended) throw new Error(`ours ${ours.child.ended} during the soak:\n${ours.child.output().slice(-4000)}`)

  // RSS in windows of a minute (a fifth of the run when it is shorter): the growth is the last window's
  // median over the lowest window's. A leak climbs to the end; the heap settling after the warm-up (the
  // first window is often the highest) is not growth.
  const window = Math.min(60, elapsedS / 5)
  const windows: number[] = []
  for (let from = 0; from + window <= elapsedS + 1e-6; from += window) {
    const inWindow = samples.filter((s) => s.atS >= from && s.atS < from + window).map((s) => s.rss)
    if (inWindow.length > 0) windows.push(median(inWindow))
  }
  const lowest = windows.length > 0 ? Math.min(...windows) : 0
  const first = windows[0] ?? 0
  const last = windows.at(-1) ?? 0
  const growthPct = lowest > 0 ? (last - lowest) / lowest * 100 : 0
  const rssPass = windows.length >= 2 && growthPct <= rssTargetPct
  const perMinute: string[][] = []
  for (let m = 0; m * 60 < elapsedS; m++) {
    const inMinute = samples.filter((s) => s.atS >= m * 60 && s.atS < (m + 1) * 60).map((s) => s.rss)
    if (inMinute.length > 0) perMinute.push([String(m + 1), formatMb(median(inMinute)), formatMb(Math.max(...inMinute))])
  }

  const rows = actions.map((x) => {
    const tally: Tally = tallies.get(x.name) ?? { ok: 0, errors: new Map(), latencies: [] }
    const sorted = tally.latencies.sort((p, q) => p - q)
    const errors = [...tally.errors].map(([what, n]) => `${what}×${n}`).join(', ')
    return { x, tally, sorted, errors, count: sorted.length, failed: sorted.length - tally.ok }
  })
  const completed = rows.reduce((sum, r) => sum + r.count, 0)
  const failed = rows.reduce((sum, r) => sum + r.failed, 0)
  const errorPass = failed === 0 && completed > 0

  const report = [
    '# Soak: ours under a steady mix',
    '',
    ...machine(loadAtStart),
    `- Load: ${settings.rate} req/s (${formatInt(completed)} requests in ${(elapsedS / 60).toFixed(1)} min, ${formatInt(completed / elapsedS)} req/s achieved) after ${settings.warmupS} s of warm-up, at most ${settings.concurrency} in flight`,
    '- Ours: `node dist/server.js`, NODE_ENV=production, PostgreSQL (fresh database), Redis, rate limiting on (each request from another client address)',
    '',
    markdownTable(['request', 'share', 'expect', 'requests', 'p50 ms', 'p99 ms', 'errors'],
      rows.map((r) => [r.x.name, `${r.x.weight} %`, String(r.x.expect), formatInt(r.count), formatMs(percentile(r.sorted, 0.5)), formatMs(percentile(r.sorted, 0.99)), r.failed === 0 ? '0' : `${r.failed} (${r.errors})`])),
    '',
    `Error rate: **${(failed / Math.max(1, completed) * 100).toFixed(3)} %** (${failed} of ${formatInt(completed)}; target 0: ${errorPass ? 'pass' : 'FAIL'}).`,
    '',
    `RSS: ${formatMb(rssAtReady)} MB at ready, ${formatMb(rssAfterWarmup)} MB after the warm-up; medians of ${Math.round(window)} s windows: ${first.toFixed(1)} MB in the first, ${lowest.toFixed(1)} MB in the lowest, ${last.toFixed(1)} MB in the last: growth **${growthPct >= 0 ? '+' : ''}${growthPct.toFixed(1)} %** (last over lowest; target ≤ ${rssTargetPct} %: ${rssPass ? 'pass' : 'FAIL'}).`,
    '',
    markdownTable(['minute', 'median RSS MB', 'max RSS MB'], perMinute),
    '',
    `${formatInt(sent)} requests scheduled. VmRSS of the server process every ${sampleEveryMs / 1000} s; the load generator runs on the same cores.`,
    ''
  ].join('\n')
  console.log(`\n${report}`)
  await writeFile(reportPath, report)
  log(`written to ${reportPath}`)
  return errorPass && rssPass
}

await runMain(main)
