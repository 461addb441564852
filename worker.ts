// Worker process: config → tracing (when configured) → app (not listening) → process every queue until SIGTERM/SIGINT.
import closeWithGrace from 'close-with-grace'
import { loadConfig } from './plugins/config.js'
import { serveMetrics } from './plugins/metrics.js'
import { startTelemetry } from './plugins/telemetry.js'

const config = loadConfig()
// Tracing patches pg, ioredis, redis and the AWS SDK as they load: the app is imported after it starts.
const telemetry = await startTelemetry(config, 'fractal-worker')
const { buildApp } = await import('./app.js')
const app = await buildApp(config)
if (telemetry) {
  telemetry.traceJobs(app)
  app.log.info({ url: config.telemetry.tracesUrl }, 'tracing: spans go to the OTLP collector')
}
await app.ready()
// The worker serves no API; its job counters and durations are scraped here when a port is given.
const metricsServer = config.worker.metricsPort === null ? null : await serveMetrics(app, config.host, config.worker.metricsPort)
if (metricsServer) app.log.info({ address: metricsServer.address() }, 'metrics served at /metrics')

closeWithGrace({ delay: config.http.shutdownGraceMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing: handing back unfinished jobs')
  await app.close()
  metricsServer?.close()
  await telemetry?.shutdown()
})

app.queue.startWorker(config.worker.concurrency)
app.schedules.start()
app.log.info({ queue: app.queue.kind, concurrency: config.worker.concurrency }, 'worker started')
