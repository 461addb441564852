import { createHash, timingSafeEqual } from 'node:crypto'
import { once } from 'node:events'
import { createServer, type Server } from 'node:http'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { queueFamilies } from '../services/queue.js'

declare module 'fastify' {
  interface FastifyInstance {
    metrics: { registry: Registry, render (): Promise<string> }
  }
}

/** Prometheus metrics: requests by route and status, latency histogram, queue depth, jobs processed, process. */
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

  // `job_name`, not `job`: Prometheus gives every scraped series a `job` label (the scrape job) and would
  // rename ours to `exported_job`.
  const jobsProcessed = new Counter({
    name: 'jobs_processed_total',
    help: 'Job attempts processed in this process, by outcome: success, retry (failed, another attempt follows), failed (failed for good)',
    labelNames: ['queue', 'job_name', 'outcome'],
    registers: [registry]
  })
  const jobDuration = new Histogram({
    name: 'job_duration_seconds',
    help: 'Time a job attempt ran in this process, whatever its outcome',
    labelNames: ['queue', 'job_name'],
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600],
    registers: [registry]
  })
  app.queue.aroundJob(async (job, run) => {
    const labels = { queue: job.family, job_name: job.name }
    const started = performance.now()
    let outcome = 'failed'
    try {
      const result = await run()
      outcome = 'success'
      return result
    } catch (err) {
      if (!job.lastAttempt) outcome = 'retry'
      throw err
    } finally {
      jobsProcessed.inc({ ...labels, outcome })
      jobDuration.observe(labels, (performance.now() - started) / 1000)
    }
  })

  // The counter and histogram children of each method, route and status, looked up once: prom-client
  // otherwise hashes the label object on every observation.
  const children = new Map<string, { requests: ReturnType<typeof requests.labels>, duration: ReturnType<typeof duration.labels> }>()
  app.addHook('onResponse', (request, reply, done) => {
    // The route pattern, not the URL, so ids do not explode the label set; unknown routes share one label.
    const route = request.routeOptions.url ?? 'unmatched'
    const key = `${request.method} ${reply.statusCode} ${route}`
    let child = children.get(key)
    if (!child) {
      const labels = { method: request.method, route, status_code: reply.statusCode }
      child = { requests: requests.labels(labels), duration: duration.labels(labels) }
      children.set(key, child)
    }
    child.requests.inc()
    child.duration.observe(reply.elapsedTime / 1000)
    done()
  })

  app.decorate('metrics', { registry, render: () => registry.metrics() })
}, { fastify: '5.x', name: 'metrics', dependencies: ['queue'] })

const digest = (value: string) => createHash('sha256').update(value).digest()

/** Whether an Authorization header carries `token` as its bearer credential (compared in constant time). */
export function bearerTokenMatches (header: string | undefined, token: string): boolean {
  const match = /^Bearer\s+(\S+)$/i.exec(header ?? '')
  return match !== null && timingSafeEqual(digest(match[1]!), digest(token))
}

/**
 * Serves the registry at `GET /metrics` on its own port (METRICS_PORT, WORKER_METRICS_PORT), for a scraper
 * inside the deployment: a standalone worker has no HTTP server of its own, and its job counters and
 * durations live in its process only. With METRICS_TOKEN, the token is asked here too.
 */
export async function serveMetrics (app: FastifyInstance, host: string, port: number): Promise<Server> {
  const token = app.config.metrics.token
  const server = createServer((req, res) => {
    if (req.method !== 'GET' || req.url?.split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n')
      return
    }
    if (token && !bearerTokenMatches(req.headers.authorization, token)) {
      res.writeHead(401, { 'content-type': 'text/plain', 'www-authenticate': 'Bearer' }).end('the metrics token is required\n')
      return
    }
    app.metrics.render().then(
      (body) => { res.writeHead(200, { 'content-type': app.metrics.registry.contentType }).end(body) },
      (err) => {
        app.log.error({ err }, 'metrics: scrape failed')
        res.writeHead(500, { 'content-type': 'text/plain' }).end('scrape failed\n')
      })
  })
  server.listen(port, host)
  await once(server, 'listening')
  return server
}
