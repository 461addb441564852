import fp from 'fastify-plugin'
import { WrongHostSecret } from '../services/hosts/hosts.errors.js'
import { reapDeadHosts } from '../services/hosts/hosts.service.js'
import { createUploadLogJob } from '../services/logs/logs.jobs.js'
import { expireLogs, requeueSpooled, type LogDeps } from '../services/logs/logs.service.js'
import { createLocalStore } from '../services/logs/logs.store.js'

declare module 'fastify' {
  interface FastifyInstance {
    logDeps: LogDeps
  }
  interface FastifyRequest {
    /** The secret the calling host agent presented (checked by the operation itself). */
    hostSecret: string | null
  }
}

/**
 * The fleet's infrastructure: the hostSecret security scheme of the host agent, the dead-host schedule,
 * the log store (S3 or a local folder) with its upload job, spool and retention schedules.
 */
export default fp(async function fleetPlugin (app) {
  const { hosts, logs } = app.config
  app.decorateRequest('hostSecret', null)
  // The host's secret (X-Host-Secret, or AuthToken in the body as the original agent sent it). It is
  // checked by the heartbeat's own UPDATE (matching the stored hash), one round trip for both.
  app.securityHandlers.hostSecret = async (request) => {
    const header = request.headers['x-host-secret']
    const secret = typeof header === 'string' ? header : (request.body as { AuthToken?: unknown } | undefined)?.AuthToken
    if (typeof secret !== 'string' || secret.length === 0) throw new WrongHostSecret()
    request.hostSecret = secret
  }
  app.schedules.add({ name: 'reap-hosts', everyMs: hosts.reapIntervalMs, run: () => reapDeadHosts(app.db, hosts.deadAfterMs) })

  // The S3 SDK loads only when a bucket is configured.
  const store = logs.bucket
    ? (await import('../services/logs/logs.s3-store.js')).createS3Store({ bucket: logs.bucket, region: logs.s3Region, endpoint: logs.s3Endpoint, forcePathStyle: logs.s3ForcePathStyle })
    : createLocalStore(logs.folder)
  app.decorate('logDeps', { queue: app.queue, store, log: app.log })
  app.queue.define(createUploadLogJob(app.db, store))
  app.schedules.add({ name: 'log-spool', everyMs: logs.spoolIntervalMs, run: () => requeueSpooled(app.db, app.queue, logs.spoolIntervalMs) })
  app.schedules.add({ name: 'log-retention', everyMs: 3_600_000, run: () => expireLogs(app.db, store, logs.retentionDays) })
}, { fastify: '5.x', name: 'fleet', dependencies: ['config', 'db', 'queue', 'auth', 'schedules'] })
