// `npm run bench:ab`: two builds of ours side by side on one database (A: AB_A, a directory holding a built
// dist/, such as a worktree of the commit before a change; B: this checkout's dist/, built now), loaded by wrk
// in alternating runs (A, B, B, A, ...) so a noisy machine's drift hits both. Prints req/s and p99 per run
// with the load average and the CPU time the server used per request (from /proc: what compares on a machine
// other work competes for), the best req/s and median CPU per request of each side, and B/A; also each
// side's start to ready and idle RSS.
//
//   AB_A             directory of the A build (required)
//   AB_ROUNDS        rounds per scenario (3)
//   BENCH_DURATION   seconds per run (5)
//   BENCH_SCENARIOS  scenario names (regions 200, regions 304, users/me)
import os from 'node:os'
import { join } from 'node:path'
import { setTimeout as sleep } from 'node:timers/promises'
import { cpuUs, envNumber, log, rssMb, runMain, setUpOurs, startServer, stop } from './harness.js'
import { buildRequests, load, type Headers } from './load.js'
import { benchBootstrapSecret, scenarios as allScenarios } from './scenarios.js'

const aDir = process.env.AB_A
const rounds = envNumber('AB_ROUNDS', 3, 1)
const duration = envNumber('BENCH_DURATION', 5, 1)
const names = (process.env.BENCH_SCENARIOS || 'regions 200,regions 304,users/me').split(',').map((s) => s.trim())
const loadNow = () => os.loadavg()[0]!.toFixed(2)

async function main (): Promise<boolean> {
  if (!aDir) throw new Error('AB_A must name the directory of the A build')
  const { databaseUrl, env, keys } = await setUpOurs({ databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres', redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379' })
  const oursEnv: NodeJS.ProcessEnv = { ...env, RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1', HOST_BOOTSTRAP_SECRET: benchBootstrapSecret }
  // A migrates and seeds; B starts on the same database without either (its own start is timed again below).
  const a = await startServer('A', [join(aDir, 'dist/server.js')], oursEnv, '/readyz')
  const noMigrate = { ...oursEnv, DATABASE_SEED: 'false' }
  const b = await startServer('B', ['dist/server.js'], noMigrate, '/readyz')
  log(`ready: A ${Math.round(a.readyMs)} ms (migrations and seed), B ${Math.round(b.readyMs)} ms (load ${loadNow()})`)
  const sides = { A: a.child, B: b.child }
  const results: string[] = []
  for (const name of names) {
    const scenario = allScenarios.find((s) => s.name === name)
    if (!scenario) throw new Error(`no scenario ${name}`)
    const reqs: Record<'A' | 'B', ReturnType<typeof buildRequests>> = { A: [], B: [] }
    for (const side of ['A', 'B'] as const) {
      const prepared: Headers = await scenario.prepare?.(sides[side].baseUrl, { databaseUrl: databaseUrl.href, privateKey: keys.privateKey }) ?? {}
      const { ':path': preparedPath, ':variants': variantsJson, ...headers } = prepared
      const json = scenario.body !== undefined && typeof scenario.body !== 'string'
      const body = json ? JSON.stringify(scenario.body) : scenario.body as string | undefined
      reqs[side] = buildRequests({
        method: scenario.method ?? 'GET',
        path: preparedPath ?? scenario.path,
        headers: { ...(json ? { 'content-type': 'application/json' } : scenario.contentType ? { 'content-type': scenario.contentType } : {}), ...scenario.headers, ...headers },
        ...(body !== undefined ? { body } : {})
      }, variantsJson ? JSON.parse(variantsJson) : null, true)
      await load(sides[side].baseUrl, reqs[side], { connections: 100, duration: 2 })
    }
    const best = { A: 0, B: 0 }
    const cpu: Record<'A' | 'B', number[]> = { A: [], B: [] }
    for (let round = 0; round < rounds; round++) {
      for (const side of round % 2 === 0 ? ['A', 'B'] as const : ['B', 'A'] as const) {
        const cpuBefore = await cpuUs(sides[side])
        const m = await load(sides[side].baseUrl, reqs[side], { connections: 100, duration })
        const cpuAfter = await cpuUs(sides[side])
        const perRequest = cpuBefore !== null && cpuAfter !== null ? (cpuAfter - cpuBefore) / (m.reqPerSec * duration) : NaN
        cpu[side].push(perRequest)
        const line = `${name} · ${side}: ${Math.round(m.reqPerSec)} req/s, p99 ${m.p99.toFixed(1)} ms, ${perRequest.toFixed(1)} µs CPU/request, ${JSON.stringify(m.statuses)} (load ${loadNow()})`
        log(line)
        results.push(line)
        best[side] = Math.max(best[side], m.reqPerSec)
      }
    }
    const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!
    const line = `${name}: best A ${Math.round(best.A)}, best B ${Math.round(best.B)} req/s: B/A ${(best.B / best.A).toFixed(2)}; CPU per request (median) A ${median(cpu.A).toFixed(1)} µs, B ${median(cpu.B).toFixed(1)} µs: B/A ${(median(cpu.B) / median(cpu.A)).toFixed(2)}`
    log(line)
    results.push(line)
  }
  await sleep(2000)
  results.push(`idle RSS after the load: A ${(await rssMb(a.child))?.toFixed(1)} MB, B ${(await rssMb(b.child))?.toFixed(1)} MB`)
  await stop(b.child)
  const b2 = await startServer('B', ['dist/server.js'], noMigrate, '/readyz')
  await stop(a.child)
  const a2 = await startServer('A', [join(aDir, 'dist/server.js')], noMigrate, '/readyz')
  results.push(`start to ready on a migrated database: A ${Math.round(a2.readyMs)} ms, B ${Math.round(b2.readyMs)} ms (load ${loadNow()})`)
  console.log(results.join('\n'))
  return true
}

await runMain(main)
