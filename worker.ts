// Worker process: config → app (not listening) → process every queue until SIGTERM/SIGINT.
import closeWithGrace from 'close-with-grace'
import { buildApp } from './app.js'
import { loadConfig } from './plugins/config.js'

const config = loadConfig()
const app = await buildApp(config)
await app.ready()

closeWithGrace({ delay: config.http.shutdownGraceMs }, async ({ signal, err }) => {
  if (err) app.log.error({ err }, 'closing after an error')
  else app.log.info({ signal }, 'closing: handing back unfinished jobs')
  await app.close()
})

app.queue.startWorker(config.worker.concurrency)
app.schedules.start()
app.log.info({ queue: app.queue.kind, concurrency: config.worker.concurrency }, 'worker started')
