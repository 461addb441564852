import fp from 'fastify-plugin'
import { createUploadLogJob } from '../../services/logs/logs.jobs.js'
import { expireLogs, requeueSpooled, type LogDeps } from '../../services/logs/logs.service.js'
import { createLocalStore } from '../../services/logs/logs.store.js'
import logsRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Decorated on the logs feature's context only. */
    logDeps: LogDeps
  }
}

/**
 * The logs feature: logs of containers and client apps, upload, list (with download URLs), download (tag
 * logs). It wires the log store (S3 or a local folder) with its upload job, spool and retention schedules.
 * It exposes nothing: its plugin is encapsulated (fastify-plugin with `encapsulate: true`, for its name and
 * dependencies only); containers upload with the containers feature's credential.
 */
export default fp(async function logsFeature (app) {
  const { logs } = app.config
  // The S3 SDK loads only when a bucket is configured.
  const store = logs.bucket
    ? (await import('../../services/logs/logs.s3-store.js')).createS3Store({ bucket: logs.bucket, region: logs.s3Region, endpoint: logs.s3Endpoint, forcePathStyle: logs.s3ForcePathStyle })
    : createLocalStore(logs.folder)
  app.decorate('logDeps', { queue: app.queue, store, maxInflatedBytes: app.config.logs.maxInflatedBytes, log: app.log })
  app.queue.define(createUploadLogJob(app.db, store))
  app.schedules.add({ name: 'log-spool', everyMs: logs.spoolIntervalMs, run: () => requeueSpooled(app.db, app.queue, logs.spoolIntervalMs) })
  app.schedules.add({ name: 'log-retention', everyMs: 3_600_000, run: () => expireLogs(app.db, store, logs.retentionDays) })

  await app.register(logsRoutes)
}, { fastify: '5.x', name: 'logs', dependencies: ['config', 'db', 'queue', 'schedules', 'containers', 'openapi-routes'], encapsulate: true })
