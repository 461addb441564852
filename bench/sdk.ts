// The SDK's overhead per call (issue 10): GET /v1/regions through @fractal/sdk against raw fetch, on the
// running ours, same run. The two are interleaved call by call on the same 20 workers (raw, SDK, raw, ...),
// so the machine's drift hits both alike, and each call is timed: the overhead is the SDK's median latency
// over raw fetch's. Printed, not timed in tests.
import { performance } from 'node:perf_hooks'
import { createFractalClient } from '../sdk/src/index.js'

export interface SdkBenchResult { calls: number, rawMedianMs: number, sdkMedianMs: number, rawP99Ms: number, sdkP99Ms: number, overheadPct: number }

const percentile = (values: number[], p: number) => {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0
}

export async function sdkBench (o: { ours: string, headers: () => Record<string, string>, log: (line: string) => void, calls?: number }): Promise<SdkBenchResult> {
  const calls = o.calls ?? 20_000
  const client = createFractalClient({ baseUrl: o.ours })
  const raw = async () => {
    const res = await fetch(`${o.ours}/v1/regions`, { headers: { accept: 'application/json', ...o.headers() } })
    if (res.status !== 200) throw new Error(`raw fetch: ${res.status}`)
    await res.json()
  }
  const sdk = async () => {
    const { response } = await client.GET('/v1/regions', { headers: o.headers() })
    if (response.status !== 200) throw new Error(`sdk: ${response.status}`)
  }
  const run = async (n: number) => {
    const latencies = { raw: [] as number[], sdk: [] as number[] }
    let next = 0
    await Promise.all(Array.from({ length: 20 }, async () => {
      while (next < n) {
        const kind = next++ % 2 === 0 ? 'raw' : 'sdk'
        const started = performance.now()
        await (kind === 'raw' ? raw() : sdk())
        latencies[kind].push(performance.now() - started)
      }
    }))
    return latencies
  }
  // Warm both paths (connections, JIT).
  await run(1000)
  const latencies = await run(calls)
  const rawMedianMs = percentile(latencies.raw, 0.5)
  const sdkMedianMs = percentile(latencies.sdk, 0.5)
  const overheadPct = (sdkMedianMs / rawMedianMs - 1) * 100
  o.log(`sdk: median ${rawMedianMs.toFixed(3)} ms raw fetch, ${sdkMedianMs.toFixed(3)} ms SDK: ${overheadPct.toFixed(1)} % per call`)
  return { calls, rawMedianMs, sdkMedianMs, rawP99Ms: percentile(latencies.raw, 0.99), sdkP99Ms: percentile(latencies.sdk, 0.99), overheadPct }
}
