// Web process: config → tracing (when configured) → app → listen. With --with-worker (npm start) it also processes the queues.
import closeWithGrace from 'close-with-grace'
import { loadConfig } from './plugins/config.js'
import { serveMetrics } from './plugins/metrics.js'
import { startTelemetry } from './plugins/telemetry.js'

const config = loadConfig()
// Tracing patches pg, ioredis, redis and the AWS SDK as they load: the app is imported after it starts.
const telemetry = await startTelemetry(config, 'fractal-webserver')
const { buildApp } = await import('./app.js')
const app = await buildApp(config)
const withWorker = process.argv.includes('--with-worker')
if (telemetry) {
  telemetry.traceJobs(app)
  app.log.info({ url: config.telemetry.tracesUrl }, 'tracing: spans go to the OTLP collector')
}

let metricsServer: Awaited<ReturnType<typeof serveMetrics>> | null = null
closeWithGrace({ delay: config.http.shutdownGraceMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing: finishing in-flight requests and jobs')
  // Requests and jobs drain side by side for SHUTDOWN_GRACE_MS less a margin. Connections still open then
  // (event streams, which never end by themselves, or slow clients) are cut, so the process exits 0
  // within the grace period instead of being killed by its timer; an event stream resumes elsewhere.
  const cut = setTimeout(() => {
    app.log.info('closing: cutting the connections still open')
    app.server.closeAllConnections()
  }, config.http.shutdownDrainMs)
  await Promise.all([app.close(), withWorker ? app.queue.close() : undefined])
  clearTimeout(cut)
  metricsServer?.close()
  await telemetry?.shutdown()
})

await app.listen({ host: config.host, port: config.port })
// Metrics for a scraper inside the deployment, on their own port; the API port serves them only to METRICS_TOKEN.
metricsServer = config.metrics.port === null ? null : await serveMetrics(app, config.host, config.metrics.port)
if (metricsServer) app.log.info({ address: metricsServer.address() }, 'metrics served at /metrics')
else if (!config.metrics.token) app.log.info('metrics: not served (set METRICS_PORT, or METRICS_TOKEN for GET /metrics on this port)')
if (withWorker) {
  app.queue.startWorker(config.worker.concurrency)
  app.schedules.start()
  app.log.info({ queue: app.queue.kind }, 'worker started in this process')
}
