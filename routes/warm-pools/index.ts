import type { FastifyInstance } from 'fastify'
import { Gauge } from 'prom-client'
import { poolStatuses, type PoolStatus } from '../../services/containers/containers.warm-pools.js'
import { handlers } from './handlers.js'

/**
 * Operators' side of the warm pools: capacity, targets, schedules, pause and maximum age (registered by the
 * containers feature, whose reconciliation pass keeps the pools). `/metrics` reads the same capacity as
 * gauges, from the database at each scrape (so every process reports every pool, whoever ran the pass).
 */
export default async function warmPoolRoutes (app: FastifyInstance) {
  app.registerOperations('warm-pools', handlers)

  // One read per scrape: the registry collects its metrics all at once, so the four gauges share it.
  let reading: ReturnType<typeof poolStatuses> | null = null
  const read = () => {
    reading ??= poolStatuses(app.db, { now: new Date(app.clock.now()), defaultMaxAgeSeconds: app.config.containers.warmPoolMaxAgeS })
      .finally(() => { setImmediate(() => { reading = null }) })
    return reading
  }
  const gauge = (name: string, help: string, fill: (g: Gauge, pool: PoolStatus) => void, extra: string[] = []) => new Gauge({
    name,
    help,
    labelNames: ['app', 'region', ...extra],
    registers: [app.metrics.registry],
    async collect () {
      this.reset()
      try {
        for (const pool of await read()) fill(this, pool)
      } catch {
        // The database away: no pools in this scrape rather than a failed scrape.
      }
    }
  })
  gauge('warm_pool_containers', 'Containers of a warm pool by state: available (ready, unheld), starting, in_use (the app\'s, held, in the region), failing (failed starts in the last hour)', (g, p) => {
    for (const [state, n] of [['available', p.available], ['starting', p.starting], ['in_use', p.inUse], ['failing', p.failing]] as const) g.set({ app: p.app, region: p.region, state }, n)
  }, ['state'])
  gauge('warm_pool_desired', 'What a warm pool keeps now: the schedule in force, else its target', (g, p) => g.set({ app: p.app, region: p.region }, p.desired))
  gauge('warm_pool_paused', '1 when a warm pool is paused', (g, p) => g.set({ app: p.app, region: p.region }, p.paused ? 1 : 0))
  gauge('warm_pool_last_pass_timestamp_seconds', 'When the reconciliation pass last looked at a warm pool', (g, p) => {
    if (p.lastPass) g.set({ app: p.app, region: p.region }, p.lastPass.at.getTime() / 1000)
  })
}
