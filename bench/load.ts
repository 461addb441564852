// The load generator of `npm run bench`, built so that it is not what a row measures:
//
// - wrk (C, one thread) where installed (Debian: `apt-get install wrk`). Every request is formatted once,
//   before the run, into a Lua table; wrk's `request()` hands out the next one (an index and a counter per
//   request, no string building). A "plain" run sends one static request (no `request()` at all), which is
//   the generator's ceiling.
// - autocannon otherwise, with the same requests pre-built (`requests`, no `setupRequest`), so its clients
//   cycle over them without a JavaScript callback per request.
//
// The rate-limit key: the requests carry a fixed set of client addresses in X-Forwarded-For (ours trusts
// 127.0.0.1 as its proxy), cycled request by request, each far below the per-address limit. The limiter
// stays in the path (its Redis round trip included); the spreading costs the generator nothing per request.
import { spawn, spawnSync } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import { join } from 'node:path'
import autocannon from 'autocannon'

export type Headers = Record<string, string>

export interface PreparedRequest {
  method: string
  path: string
  headers: Headers
  body?: string
}

export interface LoadResult {
  reqPerSec: number
  p50: number
  p99: number
  /** Responses counted by status where the generator tells them apart (autocannon); wrk: `2xx/3xx` and `4xx/5xx`. */
  statuses: Record<string, number>
  errors: number
  timeouts: number
  generator: 'wrk' | 'autocannon'
}

let wrkChecked: boolean | null = null

/** Whether wrk is installed (looked up once). */
export function hasWrk (): boolean {
  wrkChecked ??= spawnSync('wrk', ['--version']).error === undefined
  return wrkChecked
}

export function generatorName (): 'wrk' | 'autocannon' {
  return hasWrk() ? 'wrk' : 'autocannon'
}

/** Client addresses in X-Forwarded-For: 8,192 of them, so 40,000 req/s for a minute stays under 600 per address. */
export const clientAddresses = 8192

export function clientAddress (i: number): string {
  const n = i % clientAddresses
  return `10.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`
}

/**
 * The requests a run cycles over: `variants` (paths and headers of a scenario, such as one token per user)
 * crossed with the client addresses when `spread`. At most 8,192 (2,048 with bodies over 1 KB).
 */
export function buildRequests (base: PreparedRequest, variants: Array<{ path: string, headers: Headers }> | null, spread: boolean): PreparedRequest[] {
  const cap = (base.body?.length ?? 0) > 1024 ? 2048 : clientAddresses
  const n = Math.min(cap, Math.max(variants?.length ?? 1, spread ? clientAddresses : 1))
  const requests: PreparedRequest[] = []
  for (let i = 0; i < n; i++) {
    const variant = variants?.[i % variants.length]
    requests.push({
      method: base.method,
      path: variant?.path ?? base.path,
      headers: { ...base.headers, ...variant?.headers, ...(spread ? { 'x-forwarded-for': clientAddress(i) } : {}) },
      ...(base.body !== undefined ? { body: base.body } : {})
    })
  }
  return requests
}

function rawRequest (host: string, r: PreparedRequest): string {
  const lines = [`${r.method} ${r.path} HTTP/1.1`, `Host: ${host}`]
  for (const [name, value] of Object.entries(r.headers)) lines.push(`${name}: ${value}`)
  if (r.body !== undefined) lines.push(`Content-Length: ${Buffer.byteLength(r.body)}`)
  return lines.join('\r\n') + '\r\n\r\n' + (r.body ?? '')
}

/** A Lua string literal of `text`, byte for byte (a long string would turn CRLF into LF). */
function luaString (text: string): string {
  // eslint-disable-next-line no-control-regex
  return '"' + text.replace(/[\\"\x00-\x1f\x7f]/g, (c) => c === '\\' ? '\\\\' : c === '"' ? '\\"' : `\\${c.charCodeAt(0).toString().padStart(3, '0')}`) + '"'
}

// done(): the figures as one JSON line on stderr (latency in µs), instead of parsing wrk's human summary.
const luaDone = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.stderr:write(string.format('WRK_RESULT {"requests":%d,"duration":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"p50":%d,"p99":%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, latency:percentile(50), latency:percentile(99)))
end
`

function wrkScript (host: string, requests: PreparedRequest[], plain: boolean): string {
  if (plain) {
    // One static request: wrk formats it once per thread (no request() function).
    const r = requests[0]!
    const headers = Object.entries(r.headers).map(([name, value]) => `wrk.headers[ ${luaString(name)} ] = ${luaString(value)}`).join('\n')
    return `wrk.method = ${luaString(r.method)}\nwrk.path = ${luaString(r.path)}\n${headers}\n${r.body !== undefined ? `wrk.body = ${luaString(r.body)}\n` : ''}${luaDone}`
  }
  return `local reqs = {\n${requests.map((r) => luaString(rawRequest(host, r))).join(',\n')}\n}
local n = #reqs
local i = 0
request = function()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
${luaDone}`
}

async function wrk (baseUrl: string, requests: PreparedRequest[], o: { connections: number, duration: number, plain: boolean }): Promise<LoadResult> {
  const url = new URL(baseUrl)
  const dir = await mkdtemp(join(os.tmpdir(), 'fractal-bench-wrk-'))
  try {
    const script = join(dir, 'requests.lua')
    await writeFile(script, wrkScript(url.host, requests, o.plain))
    // One thread: it outruns both servers on two cores; a second would take CPU from the server.
    const proc = spawn('wrk', ['-t', '1', '-c', String(o.connections), '-d', `${o.duration}s`, '--timeout', '10s', '-s', script, baseUrl], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    proc.stdout.on('data', (chunk: Buffer) => { out += chunk.toString() })
    proc.stderr.on('data', (chunk: Buffer) => { out += chunk.toString() })
    const [code] = await once(proc, 'exit') as [number | null]
    const json = /WRK_RESULT (\{.*\})/.exec(out)?.[1]
    if (code !== 0 || !json) throw new Error(`wrk failed (${code}): ${out.slice(0, 500)}`)
    const r = JSON.parse(json) as Record<string, number>
    const seconds = r.duration! / 1e6
    const failed = r.status!
    return {
      reqPerSec: r.requests! / seconds,
      p50: r.p50! / 1000,
      p99: r.p99! / 1000,
      statuses: { '2xx/3xx': r.requests! - failed, ...(failed > 0 ? { '4xx/5xx': failed } : {}) },
      errors: r.connect! + r.read! + r.write!,
      timeouts: r.timeout!,
      generator: 'wrk'
    }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function withAutocannon (baseUrl: string, requests: PreparedRequest[], o: { connections: number, duration: number, plain: boolean }): Promise<LoadResult> {
  const first = requests[0]!
  const result = await autocannon({
    url: baseUrl + first.path,
    method: first.method,
    headers: first.headers,
    ...(first.body !== undefined ? { body: first.body } : {}),
    connections: o.connections,
    duration: o.duration,
    ...(o.plain ? {} : { requests: requests.map((r) => ({ method: r.method, path: r.path, headers: r.headers, ...(r.body !== undefined ? { body: r.body } : {}) })) })
  })
  return {
    reqPerSec: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    statuses: Object.fromEntries(Object.entries(result.statusCodeStats).map(([status, { count }]) => [status, count])),
    errors: result.errors,
    timeouts: result.timeouts,
    generator: 'autocannon'
  }
}

/**
 * Load on `baseUrl` for `duration` seconds over `connections` connections: `requests` cycled (the bench's
 * run), or, `plain`, the first of them alone, static (the generator's ceiling for the check).
 */
export async function load (baseUrl: string, requests: PreparedRequest[], o: { connections: number, duration: number, plain?: boolean }): Promise<LoadResult> {
  const options = { connections: o.connections, duration: o.duration, plain: o.plain ?? false }
  return hasWrk() ? await wrk(baseUrl, requests, options) : await withAutocannon(baseUrl, requests, options)
}

/**
 * The status `requests` get, sent one by one (the first three, and one in the middle) before a run: wrk
 * counts only 2xx/3xx against 4xx/5xx, so a 200 where a 304 is expected shows here.
 */
export async function probeStatuses (baseUrl: string, requests: PreparedRequest[]): Promise<number[]> {
  const picks = [...new Set([0, 1, 2, Math.floor(requests.length / 2)])].filter((i) => i < requests.length)
  const statuses: number[] = []
  for (const i of picks) {
    const r = requests[i]!
    const res = await fetch(baseUrl + r.path, { method: r.method, headers: r.headers, ...(r.body !== undefined ? { body: r.body } : {}) })
    await res.arrayBuffer()
    statuses.push(res.status)
  }
  return statuses
}
