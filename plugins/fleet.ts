import fp from 'fastify-plugin'
import { authenticateHost, reapDeadHosts } from '../services/hosts/hosts.service.js'
import { createUploadLogJob } from '../services/logs/logs.jobs.js'
import { expireLogs, requeueSpooled, type LogDeps } from '../services/logs/logs.service.js'
import { createLocalStore, createS3Store } from '../services/logs/logs.store.js'

declare module 'fastify' {
  interface FastifyInstance {
    logDeps: LogDeps
  }
  interface FastifyRequest {
    /** The calling host agent, once hostSecret accepted it. */
    agentHost: import('../db/types.js').Host | null
  }
}

/**
 * The fleet's infrastructure: the hostSecret security scheme of the host agent, the dead-host schedule,
 * the log store (S3 or a local folder) with its upload job, spool and retention schedules.
 */
export default fp(async function fleetPlugin (app) {
  const { hosts, logs } = app.config
  app.decorateRequest('agentHost', null)
  app.securityHandlers.hostSecret = async (request) => {
    const id = (request.params as { hostId?: string }).hostId ?? ''
    const header = request.headers['x-host-secret']
    // The original agent sent its token in the body as AuthToken.
    const secret = typeof header === 'string' ? header : (request.body as { AuthToken?: unknown } | undefined)?.AuthToken
    request.agentHost = await authenticateHost(app.db, id, typeof secret === 'string' ? secret : undefined)
  }
  app.schedules.add({ name: 'reap-hosts', everyMs: hosts.reapIntervalMs, run: () => reapDeadHosts(app.db, hosts.deadAfterMs) })

  const store = logs.bucket
    ? createS3Store({ bucket: logs.bucket, region: logs.s3Region, endpoint: logs.s3Endpoint, forcePathStyle: logs.s3ForcePathStyle })
    : createLocalStore(logs.folder)
  app.decorate('logDeps', { queue: app.queue, store, log: app.log })
  app.queue.define(createUploadLogJob(app.db, store))
  app.schedules.add({ name: 'log-spool', everyMs: logs.spoolIntervalMs, run: () => requeueSpooled(app.db, app.queue, logs.spoolIntervalMs) })
  app.schedules.add({ name: 'log-retention', everyMs: 3_600_000, run: () => expireLogs(app.db, store, logs.retentionDays) })
}, { fastify: '5.x', name: 'fleet', dependencies: ['config', 'db', 'queue', 'auth', 'schedules'] })
