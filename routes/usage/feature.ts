import fp from 'fastify-plugin'
import { writeDailyReport } from '../../services/usage/usage.service.js'
import { createLocalUsageStore } from '../../services/usage/usage.store.js'
import { handlers } from './handlers.js'

/**
 * The usage feature: operators' usage reports (tag usage), and the worker's daily file of the previous day's
 * usage in the usage bucket (or the log bucket, or DATA_DIR). It exposes nothing (encapsulated).
 */
export default fp(async function usageFeature (app) {
  const settings = app.config.usage
  // The S3 SDK loads only when a bucket is configured.
  const store = settings.bucket
    ? (await import('../../services/usage/usage.s3-store.js')).createS3UsageStore({ bucket: settings.bucket, region: settings.s3Region, endpoint: settings.s3Endpoint, forcePathStyle: settings.s3ForcePathStyle })
    : createLocalUsageStore(settings.folder)
  app.schedules.add({
    name: 'usage-daily-report',
    everyMs: settings.reportIntervalMs,
    run: () => writeDailyReport(app.db, { store, now: () => app.clock.now() })
  })
  app.registerOperations('usage', handlers)
}, { fastify: '5.x', name: 'usage', dependencies: ['config', 'db', 'schedules', 'openapi-routes'], encapsulate: true })
