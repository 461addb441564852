// Web process: config → app → listen. With --with-worker (npm start) it also processes the queues.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig } from './plugins/config.js'

const config = loadConfig()
const app = await buildApp(config)
const withWorker = process.argv.includes('--with-worker')

closeWithGrace({ delay: config.http.shutdownGraceMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing: finishing in-flight requests and jobs')
  await app.close()
})

await app.listen({ host: config.host, port: config.port })
if (withWorker) {
  app.queue.startWorker(config.worker.concurrency)
  app.schedules.start()
  app.log.info({ queue: app.queue.kind }, 'worker started in this process')
}
