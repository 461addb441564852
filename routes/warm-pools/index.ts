import type { FastifyInstance } from 'fastify'
import { Gauge } from 'prom-client'
import { poolStatuses } from '../../services/containers/containers.warm-pools.js'
import { handlers } from './handlers.js'

/**
 * Operators' side of the warm pools: capacity, targets, schedules, pause and maximum age (registered by the
 * containers feature, whose reconciliation pass keeps the pools). `/metrics` reads the same capacity as
 * gauges, from the database at each scrape (so every process reports every pool, whoever ran the pass).
 */
export default async function warmPoolRoutes (app: FastifyInstance) {
  app.registerOperations('warm-pools', handlers)

  const labelNames = ['app', 'region'] as const
  const registers = [app.metrics.registry]
  const containers = new Gauge({ name: 'warm_pool_containers', help: 'Containers of a warm pool by state: available (ready, unheld), starting, in_use (the app\'s, held, in the region), failing (failed starts in the last hour)', labelNames: [...labelNames, 'state'], registers })
  const desired = new Gauge({ name: 'warm_pool_desired', help: 'What a warm pool keeps now: the schedule in force, else its target', labelNames, registers })
  const paused = new Gauge({ name: 'warm_pool_paused', help: '1 when a warm pool is paused', labelNames, registers })
  const lastPass = new Gauge({ name: 'warm_pool_last_pass_timestamp_seconds', help: 'When the reconciliation pass last looked at a warm pool', labelNames, registers })
  new Gauge({ // eslint-disable-line no-new
    name: 'warm_pool_scrape_errors',
    help: 'Scrapes that could not read the warm pools (the database was away); their gauges were left out',
    registers,
    async collect () {
      const gauges = [containers, desired, paused, lastPass]
      for (const g of gauges) g.reset()
      try {
        const pools = await poolStatuses(app.db, { now: new Date(app.clock.now()), defaultMaxAgeSeconds: app.config.containers.warmPoolMaxAgeS })
        for (const p of pools) {
          const labels = { app: p.app, region: p.region }
          containers.set({ ...labels, state: 'available' }, p.available)
          containers.set({ ...labels, state: 'starting' }, p.starting)
          containers.set({ ...labels, state: 'in_use' }, p.inUse)
          containers.set({ ...labels, state: 'failing' }, p.failing)
          desired.set(labels, p.desired)
          paused.set(labels, p.paused ? 1 : 0)
          if (p.lastPass) lastPass.set(labels, p.lastPass.at.getTime() / 1000)
        }
      } catch {
        this.inc()
      }
    }
  })
}
