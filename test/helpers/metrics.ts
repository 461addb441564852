import type { FastifyInstance } from 'fastify'

/** A histogram's `_sum` and `_count` (without labels) as the app's `/metrics` shows them now (its registry's text). */
export async function histogramTotals (app: FastifyInstance, name: string): Promise<{ sum: number, count: number }> {
  const body = await app.metrics.render()
  const read = (suffix: string) => Number(new RegExp(`^${name}_${suffix} (\\d+(?:\\.\\d+)?)$`, 'm').exec(body)?.[1])
  return { sum: read('sum'), count: read('count') }
}
