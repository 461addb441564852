// `npm run bench:profile`: ours (dist/, production, PostgreSQL + Redis, as in `npm run bench`) under
// `node --cpu-prof`, loaded by wrk on the scenarios named in BENCH_SCENARIOS (default: regions 200, regions
// 304, users/me), one after the other; then the profile's self time by function and by file, per scenario
// (one ours process per scenario, so each profile holds one path). Profiles are kept in PROFILE_DIR
// (bench/profiles by default, ignored by git) for Chrome DevTools or speedscope. The tables count only the
// samples taken during the measured load (start-up and warm-up left out).
//
//   BENCH_DURATION   seconds of load per scenario (8), after 2 s of warm-up
//   PROFILE_TOP      rows printed per table (25)
import { mkdir, readdir, readFile } from 'node:fs/promises'
import os from 'node:os'
import { join, relative } from 'node:path'
import { envNumber, log, root, runMain, setUpOurs, startServer, stop } from './harness.js'
import { buildRequests, load, type Headers } from './load.js'
import { benchBootstrapSecret, scenarios as allScenarios, type Scenario } from './scenarios.js'

interface ProfileNode { id: number, callFrame: { functionName: string, url: string, lineNumber: number }, children?: number[] }
interface Profile { nodes: ProfileNode[], samples: number[], timeDeltas: number[], startTime: number }

const duration = envNumber('BENCH_DURATION', 8, 1)
const top = envNumber('PROFILE_TOP', 25, 1)
const names = (process.env.BENCH_SCENARIOS || 'regions 200,regions 304,users/me').split(',').map((s) => s.trim())
const profileDir = process.env.PROFILE_DIR || join(root, 'bench', 'profiles')

function where (url: string): string {
  if (!url) return '(native)'
  const path = url.replace(/^file:\/\//, '')
  const nm = path.lastIndexOf('node_modules/')
  if (nm >= 0) {
    const rest = path.slice(nm + 'node_modules/'.length).split('/')
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!
  }
  if (path.startsWith('node:')) return path
  return relative(root, path)
}

/** Self time of the samples taken inside `window` (µs of the monotonic clock, as V8 stamps its samples). */
function summarize (profile: Profile, window: [number, number]): string {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]))
  const selfUs = new Map<number, number>()
  let at = profile.startTime
  profile.samples.forEach((id, i) => {
    const delta = profile.timeDeltas[i] ?? 0
    at += delta
    if (at >= window[0] && at <= window[1]) selfUs.set(id, (selfUs.get(id) ?? 0) + delta)
  })
  const total = [...selfUs.values()].reduce((a, b) => a + b, 0)
  const idle = [...selfUs.entries()].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((a, [, t]) => a + t, 0)
  const fns = new Map<string, number>()
  const files = new Map<string, number>()
  for (const [id, us] of selfUs) {
    const f = byId.get(id)!.callFrame
    if (f.functionName === '(idle)') continue
    const file = where(f.url)
    const fn = `${f.functionName || '(anonymous)'} ${file}${f.url ? `:${f.lineNumber + 1}` : ''}`
    fns.set(fn, (fns.get(fn) ?? 0) + us)
    files.set(file, (files.get(file) ?? 0) + us)
  }
  const busy = total - idle
  const table = (m: Map<string, number>) => [...m.entries()].sort((a, b) => b[1] - a[1]).slice(0, top)
    .map(([name, us]) => `  ${(us / busy * 100).toFixed(1).padStart(5)} %  ${name}`).join('\n')
  return `the measured load only: busy ${(busy / 1e6).toFixed(1)} s of ${(total / 1e6).toFixed(1)} s\nself time by file or package:\n${table(files)}\nself time by function:\n${table(fns)}`
}

async function main (): Promise<boolean> {
  const settings = { databaseUrl: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres', redisUrl: process.env.REDIS_URL || 'redis://127.0.0.1:6379' }
  const { databaseUrl, env, keys } = await setUpOurs(settings)
  await mkdir(profileDir, { recursive: true })
  const oursEnv: NodeJS.ProcessEnv = { ...env, RATE_LIMIT_ENABLED: 'true', TRUST_PROXY: '127.0.0.1', HOST_BOOTSTRAP_SECRET: benchBootstrapSecret }
  for (const name of names) {
    const scenario = allScenarios.find((s) => s.name === name) as Scenario | undefined
    if (!scenario) throw new Error(`no scenario ${name}`)
    const dir = join(profileDir, name.replace(/[^a-z0-9]+/gi, '-'))
    await mkdir(dir, { recursive: true })
    const before = new Set(await readdir(dir))
    const ours = await startServer('ours', ['--cpu-prof', '--cpu-prof-dir', dir, 'dist/server.js'], oursEnv, '/readyz')
    oursEnv.DATABASE_SEED = 'false'
    const prepared: Headers = await scenario.prepare?.(ours.child.baseUrl, { databaseUrl: databaseUrl.href, privateKey: keys.privateKey }) ?? {}
    const { ':path': preparedPath, ':variants': variantsJson, ...headers } = prepared
    const json = scenario.body !== undefined && typeof scenario.body !== 'string'
    const body = json ? JSON.stringify(scenario.body) : scenario.body as string | undefined
    const requests = buildRequests({
      method: scenario.method ?? 'GET',
      path: preparedPath ?? scenario.path,
      headers: { ...(json ? { 'content-type': 'application/json' } : scenario.contentType ? { 'content-type': scenario.contentType } : {}), ...scenario.headers, ...headers },
      ...(body !== undefined ? { body } : {})
    }, variantsJson ? JSON.parse(variantsJson) : null, true)
    await load(ours.child.baseUrl, requests, { connections: 100, duration: 2 })
    const from = Number(process.hrtime.bigint() / 1000n)
    const m = await load(ours.child.baseUrl, requests, { connections: 100, duration })
    const to = Number(process.hrtime.bigint() / 1000n)
    log(`${name}: ${Math.round(m.reqPerSec)} req/s, p99 ${m.p99} ms, ${JSON.stringify(m.statuses)} (load ${os.loadavg()[0]!.toFixed(2)})`)
    await stop(ours.child)
    const file = (await readdir(dir)).find((f) => !before.has(f) && f.endsWith('.cpuprofile'))
    if (!file) throw new Error(`no profile written in ${dir}`)
    console.log(`\n## ${name} (${join(dir, file)})\n${summarize(JSON.parse(await readFile(join(dir, file), 'utf8')) as Profile, [from, to])}`)
  }
  return true
}

await runMain(main)
