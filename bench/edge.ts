// The edge-cache benches (issue 9), run by bench/run.ts against the running ours:
// 1. Purge storm: 100 clients read the public reads (every catalog app, the lists, plans, status) while an
//    operator purges everything once a second. The origin's two layers (per process, then Redis) must keep
//    the database at about one computation per distinct key per purge, not one per request.
// 2. Varnish: GET /v1/apps through varnishd with deploy/varnish/default.vcl (a HIT) against ours directly,
//    same run. Skipped, with the reason printed, where varnishd is not installed. The load comes from wrk
//    (C, one thread) where it is installed: autocannon (one JavaScript thread) saturates near 20,000 req/s
//    on two cores, below what Varnish serves, and would measure itself. Both sides get the same generator.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import autocannon from 'autocannon'
import pg from 'pg'
import { signAccessTokens } from './assignment.js'

export interface EdgeBenchOptions {
  ours: string
  databaseUrl: string
  privateKey: string
  connections: number
  duration: number
  spread: () => Record<string, string>
  freePort: () => Promise<number>
  log: (line: string) => void
}

export interface PurgeStormResult {
  keys: number
  purges: number
  requests: number
  reqPerSec: number
  p99: number
  statuses: Record<string, number>
  queries: number
  queriesPerSec: number
  /** The target: at most one query per distinct key per second (without coalescing it is one per read). */
  keysPerSec: number
}

export interface VarnishResult {
  skipped: string | null
  /** wrk or autocannon. */
  generator?: string
  hit?: { reqPerSec: number, p99: number, hits: number, misses: number }
  origin?: { reqPerSec: number, p99: number }
  ratio?: number
}

interface Measured { reqPerSec: number, p99: number, failed: number }

function hasWrk (): boolean {
  return spawnSync('wrk', ['--version']).error === undefined
}

// Each request from another client address (as the other scenarios: the origin's rate limit is per client).
const wrkScript = `local n = 0
request = function()
  n = n + 1
  wrk.headers["X-Forwarded-For"] = string.format("10.%d.%d.%d", math.floor(n / 65536) % 16, math.floor(n / 256) % 256, n % 256)
  return wrk.format()
end
`

/** wrk with one thread (it outruns both servers; a second would take CPU from them); req/s, p99 (from --latency) and the non-2xx/3xx and socket errors it counts. */
async function wrk (url: string, connections: number, duration: number, dir: string): Promise<Measured> {
  const script = join(dir, 'spread.lua')
  await writeFile(script, wrkScript)
  const proc = spawn('wrk', ['-t', '1', '-c', String(connections), '-d', `${duration}s`, '--latency', '-s', script, url], { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  proc.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
  proc.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
  const [code] = await once(proc, 'exit') as [number | null]
  const reqPerSec = Number(/Requests\/sec:\s+([\d.]+)/.exec(out)?.[1])
  if (code !== 0 || !Number.isFinite(reqPerSec)) throw new Error(`wrk failed (${code}): ${out.slice(0, 500)}`)
  const p99 = /^\s+99%\s+([\d.]+)(us|ms|s)\s*$/m.exec(out)
  const p99Ms = p99 ? Number(p99[1]) * ({ us: 0.001, ms: 1, s: 1000 } as Record<string, number>)[p99[2]!]! : NaN
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(out)?.[1] ?? 0)
  const socketErrors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out)
  const errors = socketErrors ? socketErrors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0
  return { reqPerSec, p99: p99Ms, failed: non2xx + errors }
}

/** An admin of the bench database (a token of an account that does not exist is refused). */
async function adminToken (db: pg.Client, privateKey: string): Promise<string> {
  const { rows } = await db.query<{ id: string }>(
    "insert into account (email, name, role, email_verified_at) values ('bench-admin-' || $1 || '@example.test', 'Bench admin', 'admin', now()) returning id", [randomUUID()])
  const [token] = await signAccessTokens(privateKey, [{ sub: rows[0]!.id, role: 'admin', scopes: ['admin'] }])
  return token!
}

/** Transactions committed in the bench database: each of ours' queries is one (autocommit). */
async function committed (db: pg.Client, name: string): Promise<number> {
  const { rows } = await db.query<{ n: string }>('select xact_commit::text n from pg_stat_database where datname = $1', [name])
  return Number(rows[0]?.n ?? 0)
}

export async function purgeStorm (o: EdgeBenchOptions): Promise<PurgeStormResult> {
  const db = new pg.Client({ connectionString: o.databaseUrl })
  await db.connect()
  try {
    const name = new URL(o.databaseUrl).pathname.slice(1)
    const apps = (await db.query<{ id: string }>('select id from app order by id')).rows.map((r) => r.id)
    const paths = ['/v1/apps', '/v1/regions', '/v1/plans', '/v1/status', '/v1/storage/providers', ...apps.map((id) => `/v1/apps/${id}`)]
    const token = await adminToken(db, o.privateKey)
    o.log(`purge storm: ${paths.length} distinct public reads, ${o.connections} clients, everything purged every second`)
    // Backends report their counters at most once a second and when idle for a while: settle first.
    await sleep(1500)
    const before = await committed(db, name)
    let purges = 0
    const storm = { stop: false }
    const purging = (async () => {
      while (!storm.stop) {
        await sleep(1000)
        if (storm.stop) break
        const res = await fetch(`${o.ours}/v1/admin/cache/purge`, {
          method: 'POST',
          headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', ...o.spread() },
          body: JSON.stringify({ all: true })
        })
        await res.arrayBuffer()
        if (res.status === 202) purges++
      }
    })()
    let next = 0
    const result = await autocannon({
      url: o.ours,
      connections: o.connections,
      duration: o.duration,
      requests: [{ setupRequest: (request) => ({ ...request, path: paths[next++ % paths.length]!, headers: { ...request.headers, ...o.spread() } }) }]
    })
    storm.stop = true
    await purging
    // PostgreSQL 15 flushes a backend's counters when it has been idle for 10 s at most.
    await sleep(11_000)
    // Each purge writes its audit row: those are not reads.
    const queries = await committed(db, name) - before - purges
    const statuses = Object.fromEntries(Object.entries(result.statusCodeStats).map(([s, { count }]) => [s, count]))
    return {
      keys: paths.length,
      purges,
      requests: result.requests.total,
      reqPerSec: result.requests.average,
      p99: result.latency.p99,
      statuses,
      queries,
      queriesPerSec: queries / o.duration,
      keysPerSec: paths.length
    }
  } finally {
    await db.end()
  }
}

const vclPath = fileURLToPath(new URL('../deploy/varnish/default.vcl', import.meta.url))

function varnishd (): string | null {
  for (const candidate of ['varnishd', '/usr/sbin/varnishd']) {
    if (spawnSync(candidate, ['-V']).status === 0) return candidate
  }
  return null
}

/** varnishd in the foreground on a free port, in front of ours, with our VCL (its backend rewritten). */
async function startVarnish (binary: string, origin: URL, port: number): Promise<{ proc: ChildProcess, dir: string }> {
  const dir = await mkdtemp(join(os.tmpdir(), 'fractal-varnish-'))
  const vcl = (await readFile(vclPath, 'utf8'))
    .replace(/(\.host\s*=\s*)"[^"]*"/, `$1"${origin.hostname}"`)
    .replace(/(\.port\s*=\s*)"[^"]*"/, `$1"${origin.port}"`)
  await writeFile(join(dir, 'default.vcl'), vcl)
  // -j none: no privilege separation (the bench may run as root; the work dir is ours); -T none: no CLI port.
  const proc = spawn(binary, ['-F', '-j', 'none', '-T', 'none', '-a', `127.0.0.1:${port}`, '-f', join(dir, 'default.vcl'), '-n', join(dir, 'work'), '-s', 'malloc,64m', '-p', 'thread_pool_min=50'], { stdio: ['ignore', 'pipe', 'pipe'] })
  const deadline = Date.now() + 15_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`varnishd exited with ${proc.exitCode}`)
    try {
      const res = await fetch(`http://127.0.0.1:${port}/healthz`)
      await res.arrayBuffer()
      return { proc, dir }
    } catch {
      if (Date.now() > deadline) throw new Error('varnishd did not answer within 15 s')
      await sleep(100)
    }
  }
}

export async function varnishBench (o: EdgeBenchOptions): Promise<VarnishResult> {
  const binary = varnishd()
  if (!binary) return { skipped: 'varnishd is not installed (apt-get install varnish varnish-modules)' }
  const port = await o.freePort()
  const { proc, dir } = await startVarnish(binary, new URL(o.ours), port)
  try {
    const generator = hasWrk() ? 'wrk' : 'autocannon'
    const run = async (base: string): Promise<Measured> => {
      if (generator === 'wrk') return await wrk(`${base}/v1/apps`, o.connections, o.duration, dir)
      const result = await autocannon({ url: `${base}/v1/apps`, connections: o.connections, duration: o.duration, requests: [{ setupRequest: (r) => ({ ...r, headers: { ...r.headers, ...o.spread() } }) }] })
      return { reqPerSec: result.requests.average, p99: result.latency.p99, failed: result.non2xx + result.errors + result.timeouts }
    }
    // One read fills the cache; the measured run reads it. The origin run asks ours directly (its origin layer on).
    await (await fetch(`http://127.0.0.1:${port}/v1/apps`)).arrayBuffer()
    const through = await run(`http://127.0.0.1:${port}`)
    const direct = await run(o.ours)
    const sample = await fetch(`http://127.0.0.1:${port}/v1/apps`)
    await sample.arrayBuffer()
    const hits = /hit/i.test(sample.headers.get('x-cache') ?? '') ? 1 : 0
    o.log(`varnish (${generator}): ${Math.round(through.reqPerSec)} req/s through Varnish (X-Cache ${sample.headers.get('x-cache')}, ${through.failed} failed), ${Math.round(direct.reqPerSec)} req/s at the origin (${direct.failed} failed)`)
    return {
      skipped: null,
      generator,
      hit: { reqPerSec: through.reqPerSec, p99: through.p99, hits, misses: 1 - hits },
      origin: { reqPerSec: direct.reqPerSec, p99: direct.p99 },
      ratio: through.reqPerSec / Math.max(1, direct.reqPerSec)
    }
  } finally {
    proc.kill('SIGTERM')
    await Promise.race([once(proc, 'exit'), sleep(5000)])
    if (proc.exitCode === null) proc.kill('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}
