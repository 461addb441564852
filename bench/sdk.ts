// The SDK's overhead per call (issue 10): GET /v1/regions through @fractal/sdk against raw fetch, on the
// running ours, same run. Calls go 20 at a time; the two alternate for three rounds and the best of each
// compares (the machine drifts). Printed, not timed in tests.
import { performance } from 'node:perf_hooks'
import { createFractalClient } from '../sdk/src/index.js'

export interface SdkBenchResult { rawPerSec: number, sdkPerSec: number, overheadPct: number, rounds: Array<{ raw: number, sdk: number }> }

async function callsPerSec (calls: number, concurrency: number, one: () => Promise<void>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next++ < calls) await one()
  }))
  return calls / ((performance.now() - started) / 1000)
}

export async function sdkBench (o: { ours: string, headers: () => Record<string, string>, log: (line: string) => void, calls?: number }): Promise<SdkBenchResult> {
  const calls = o.calls ?? 3000
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
  // Warm both paths (connections, JIT).
  await callsPerSec(300, 20, raw)
  await callsPerSec(300, 20, sdk)
  const rounds: SdkBenchResult['rounds'] = []
  for (let i = 0; i < 3; i++) rounds.push({ raw: await callsPerSec(calls, 20, raw), sdk: await callsPerSec(calls, 20, sdk) })
  const rawPerSec = Math.max(...rounds.map((r) => r.raw))
  const sdkPerSec = Math.max(...rounds.map((r) => r.sdk))
  const overheadPct = (rawPerSec / sdkPerSec - 1) * 100
  o.log(`sdk: raw fetch ${Math.round(rawPerSec)} calls/s, SDK ${Math.round(sdkPerSec)} calls/s: ${overheadPct.toFixed(1)} % per call`)
  return { rawPerSec, sdkPerSec, overheadPct, rounds }
}
