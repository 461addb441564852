import fp from 'fastify-plugin'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { queueFamilies } from '../services/queue.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry, render (): Promise<string> }
  }
}

/** Prometheus metrics: requests by route and status, latency histogram, queue depth, process. */
export default fp(async function metricsPlugin (app) {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const labelNames = ['method', 'route', 'status_code'] as const
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests', labelNames, registers: [registry] })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency',
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [registry]
  })
  new Gauge({ // eslint-disable-line no-new
    name: 'queue_jobs',
    help: 'Jobs per queue and state',
    labelNames: ['queue', 'state'],
    registers: [registry],
    async collect () {
      await Promise.all(queueFamilies.map(async (family) => {
        try {
          const counts = await app.queue.counts(family)
          for (const [state, n] of Object.entries(counts)) this.set({ queue: family, state }, n)
        } catch {
          // Redis away: report nothing for this queue rather than fail the scrape.
        }
      }))
    }
  })

  app.addHook('onResponse', async (request, reply) => {
    // The route pattern, not the URL, so ids do not explode the label set; unknown routes share one label.
    const labels = { method: request.method, route: request.routeOptions.url ?? 'unmatched', status_code: reply.statusCode }
    requests.inc(labels)
    duration.observe(labels, reply.elapsedTime / 1000)
  })

  app.decorate('metrics', { registry, render: () => registry.metrics() })
}, { fastify: '5.x', name: 'metrics', dependencies: ['queue'] })
