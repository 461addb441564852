// What the bench scripts share (bench/run.ts, bench/soak.ts): child servers started and stopped, a fresh
// database and Redis prefix for ours, everything undone in reverse order on success, error or signal, and
// the report helpers.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { generateKeyPairSync, randomBytes } from 'node:crypto'
import { once } from 'node:events'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { createServer, type AddressInfo } from 'node:net'
import os from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { setTimeout as sleep } from 'node:timers/promises'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { deleteRedisKeys } from '../test/helpers/redis.js'

export const root = fileURLToPath(new URL('..', import.meta.url))

export function envNumber (name: string, fallback: number, min: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const value = Number(raw)
  if (!Number.isFinite(value) || value < min) throw new Error(`${name} must be a number >= ${min}, not ${raw}`)
  return value
}

const readyPollMs = 20
// Above ours' default SHUTDOWN_GRACE_MS (10 s).
const stopTimeoutMs = 15_000
const maxOutputBytes = 1 << 20

export const log = (line: string) => console.error(line)

// ---------------------------------------------------------------------------------------------------------
// Clean-up: everything created registers how to undo it; undone in reverse order, on success, error or signal.

const cleanups: Array<{ what: string, run: () => Promise<unknown> }> = []

export function onCleanup (what: string, run: () => Promise<unknown>): void {
  cleanups.push({ what, run })
}

export async function cleanUp (): Promise<void> {
  for (let step = cleanups.pop(); step; step = cleanups.pop()) {
    try {
      await step.run()
    } catch (err) {
      log(`clean-up: ${step.what} failed: ${(err as Error).message}`)
    }
  }
}

// ---------------------------------------------------------------------------------------------------------
// Child servers

export interface Child {
  name: string
  process: ChildProcess
  baseUrl: string
  /** How it ended (`exited with code 1`), null while running. */
  ended: string | null
  /** What it wrote to stdout and stderr, interleaved (the first MiB). */
  output (): string
}

export class StartError extends Error {
  constructor (message: string, readonly output: string) {
    super(message)
  }
}

export async function freePort (): Promise<number> {
  const server = createServer()
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

function describe (err: unknown): string {
  const cause = (err as { cause?: { code?: string, message?: string } }).cause
  return cause?.code ?? cause?.message ?? (err as Error).message
}

/**
 * Spawns `node <args>` (node itself, so the pid is the server's) on a free port and polls
 * `readyPath` every 20 ms; resolves with the time from spawn to its first 200.
 */
export async function startServer (name: string, args: string[], env: NodeJS.ProcessEnv, readyPath: string | null, readyTimeoutMs = 60_000): Promise<{ child: Child, readyMs: number }> {
  const port = await freePort()
  const chunks: Buffer[] = []
  let kept = 0
  const keep = (chunk: Buffer) => {
    if (kept >= maxOutputBytes) return
    chunks.push(chunk)
    kept += chunk.length
  }
  const started = performance.now()
  const proc = spawn(process.execPath, args, {
    cwd: root,
    env: { ...env, HOST: '127.0.0.1', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  const child: Child = {
    name,
    process: proc,
    baseUrl: `http://127.0.0.1:${port}`,
    ended: null,
    output: () => Buffer.concat(chunks).toString('utf8')
  }
  proc.stdout?.on('data', keep)
  proc.stderr?.on('data', keep)
  proc.on('error', (err) => { child.ended ??= `could not be spawned: ${err.message}` })
  proc.on('exit', (code, signal) => { child.ended = signal ? `was killed by ${signal}` : `exited with code ${code}` })
  onCleanup(`stopping ${name}`, () => stop(child))

  // A process that does not listen (the worker) is started and left to its work.
  if (readyPath === null) return { child, readyMs: 0 }
  let last = 'no answer yet'
  for (;;) {
    if (child.ended) throw new StartError(`${name} ${child.ended} before answering 200 on ${readyPath} (last poll: ${last})`, child.output())
    if (performance.now() - started > readyTimeoutMs) {
      throw new StartError(`${name} did not answer 200 on ${readyPath} within ${readyTimeoutMs / 1000} s (last poll: ${last})`, child.output())
    }
    try {
      const res = await fetch(child.baseUrl + readyPath, { signal: AbortSignal.timeout(2000) })
      const body = await res.text()
      if (res.status === 200) return { child, readyMs: performance.now() - started }
      last = `${res.status} ${body.slice(0, 500)}`
    } catch (err) {
      last = describe(err)
    }
    await sleep(readyPollMs)
  }
}

/** SIGTERM, then wait; SIGKILL when it is still there after 15 s. */
export async function stop (child: Child): Promise<void> {
  const proc = child.process
  if (proc.pid === undefined || proc.exitCode !== null || proc.signalCode !== null) return
  const exited = once(proc, 'exit').then(() => 'exited' as const)
  proc.kill('SIGTERM')
  const outcome = await Promise.race([exited, sleep(stopTimeoutMs, 'timeout' as const, { ref: false })])
  if (outcome === 'timeout') {
    log(`${child.name} still running ${stopTimeoutMs / 1000} s after SIGTERM: SIGKILL`)
    proc.kill('SIGKILL')
    await exited
  }
}

/** VmRSS of a process in MB (MiB), null off Linux or once it is gone. */
export async function rssMb (child: Child): Promise<number | null> {
  try {
    const status = await readFile(`/proc/${child.process.pid}/status`, 'utf8')
    const kb = /^VmRSS:\s+(\d+)\s+kB/m.exec(status)?.[1]
    return kb === undefined ? null : Number(kb) / 1024
  } catch {
    return null
  }
}

/**
 * CPU time (user + system) a process has used so far, in microseconds, null off Linux: CPU per request is
 * what compares two servers on a machine other work competes for (req/s there measures the competition).
 */
export async function cpuUs (child: Child): Promise<number | null> {
  try {
    const stat = await readFile(`/proc/${child.process.pid}/stat`, 'utf8')
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) * 1e6 / 100
  } catch {
    return null
  }
}

// ---------------------------------------------------------------------------------------------------------

let clientCount = 0

/** The next of 2^20 client addresses (10.0.0.0/12): each stays far below 600 requests a minute. */
export function nextClientAddress (): string {
  const i = clientCount++ % 0x100000
  return `10.${i >>> 16}.${(i >>> 8) & 255}.${i & 255}`
}

// ---------------------------------------------------------------------------------------------------------
// Database and Redis

export async function dropStaleDatabases (admin: pg.Client): Promise<void> {
  // Left by runs killed before their clean-up, more than an hour ago.
  const { rows } = await admin.query<{ datname: string }>(
    "select datname from pg_database where datname ~ '^fractal_bench_[0-9]+$' and substring(datname from 15)::bigint < $1",
    [Date.now() - 3600_000])
  for (const { datname } of rows) {
    await admin.query(`drop database if exists "${datname}" with (force)`)
    log(`dropped stale database ${datname}`)
  }
}

export const formatInt = (n: number) => Math.round(n).toLocaleString('en-US')
export const formatMs = (n: number) => String(Math.round(n * 10) / 10)
export const formatMb = (n: number | null) => n === null ? 'n/a' : n.toFixed(1)

export function markdownTable (header: string[], rows: string[][]): string {
  const widths = header.map((cell, i) => Math.max(cell.length, ...rows.map((row) => row[i]?.length ?? 0)))
  const line = (cells: string[]) => `| ${cells.map((cell, i) => cell.padEnd(widths[i]!)).join(' | ')} |`
  return [line(header), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n')
}

export function machine (loadAtStart: number[]): string[] {
  const cpus = os.cpus()
  return [
    `- Date: ${new Date().toISOString()}`,
    `- CPU: ${cpus[0]?.model ?? 'unknown'}, ${cpus.length} cores; ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM`,
    `- OS: ${os.type()} ${os.release()} ${os.arch()}; load average at start ${loadAtStart.map((n) => n.toFixed(2)).join(' / ')}`,
    `- Node: ${process.version}`
  ]
}

// ---------------------------------------------------------------------------------------------------------

export interface Ours {
  /** The fresh database's name and URL. */
  database: string
  databaseUrl: URL
  /** A temporary directory (removed at the end). */
  dataDir: string
  redisPrefix: string
  keys: { privateKey: string, publicKey: string }
  /** Ours' environment: production, this database (migrated and seeded at start), this Redis prefix, this key pair. */
  env: NodeJS.ProcessEnv
}

/**
 * What ours runs on in a bench: a fresh PostgreSQL database (dropped at the end, stale ones of killed runs
 * dropped now), a Redis prefix (deleted at the end), a data directory, a key pair, and dist/ built: ours
 * runs as in production, compiled JavaScript.
 */
export async function setUpOurs (settings: { databaseUrl: string, redisUrl: string }): Promise<Ours> {
  const admin = new pg.Client({ connectionString: settings.databaseUrl })
  admin.on('error', (err) => log(`admin connection: ${err.message}`))
  await admin.connect()
  onCleanup('closing the admin connection', () => admin.end())
  await dropStaleDatabases(admin)
  const database = `fractal_bench_${Date.now()}`
  await admin.query(`create database "${database}"`)
  onCleanup(`dropping database ${database}`, () => admin.query(`drop database if exists "${database}" with (force)`))
  const databaseUrl = new URL(settings.databaseUrl)
  databaseUrl.pathname = `/${database}`

  const dataDir = await mkdtemp(join(os.tmpdir(), 'fractal-bench-'))
  onCleanup(`removing ${dataDir}`, () => rm(dataDir, { recursive: true, force: true }))
  const redisPrefix = `bench:${randomBytes(4).toString('hex')}:`
  onCleanup(`deleting the Redis keys ${redisPrefix}*`, () => deleteRedisKeys(settings.redisUrl, redisPrefix))

  log('building dist/ (npm run build)')
  execFileSync('npm', ['run', 'build', '--silent'], { cwd: root, stdio: 'inherit' })
  const keys = generateKeyPairSync('ec', { namedCurve: 'P-256', privateKeyEncoding: { type: 'pkcs8', format: 'pem' }, publicKeyEncoding: { type: 'spki', format: 'pem' } })
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NODE_ENV: 'production',
    JWT_PRIVATE_KEY: keys.privateKey,
    DATABASE_URL: databaseUrl.href,
    DATABASE_AUTO_MIGRATE: 'true',
    DATABASE_SEED: 'true',
    REDIS_URL: settings.redisUrl,
    REDIS_PREFIX: redisPrefix,
    // Production must name its cloud: the bench measures the API, not AWS.
    CLOUD_PROVIDER: 'simulated',
    LOG_LEVEL: 'warn',
    DATA_DIR: dataDir
  }
  return { database, databaseUrl, dataDir, redisPrefix, keys, env }
}

/**
 * Runs a bench's main: exit code 0 when it returns true, 1 when false or it throws (a server that did not
 * start shows its output); everything registered with onCleanup is undone in any case, also on Ctrl-C.
 */
export async function runMain (main: () => Promise<boolean>): Promise<void> {
  // Ctrl-C reaches this process twice (from the terminal and relayed by the tsx CLI): clean up once, ignore the rest.
  let interrupted = false
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      if (interrupted) return
      interrupted = true
      log(`${signal}: stopping the servers and cleaning up`)
      cleanUp().finally(() => process.exit(130))
    })
  }
  try {
    const pass = await main()
    process.exitCode = pass ? 0 : 1
  } catch (err) {
    process.exitCode = 1
    if (err instanceof StartError) {
      log(`\n${err.message}. Its output:\n${'-'.repeat(72)}\n${err.output}${'-'.repeat(72)}`)
    } else {
      log(`\nbench failed: ${(err as Error).stack ?? String(err)}`)
    }
  } finally {
    await cleanUp()
  }
}
