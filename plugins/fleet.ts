import { createPublicKey } from 'node:crypto'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { Histogram } from 'prom-client'
import { Batcher } from '../services/batcher.js'
import { WrongHostSecret } from '../services/hosts/hosts.errors.js'
import { createRollJobs, type RollDeps } from '../services/fleet/ami.service.js'
import { createClusterJobs } from '../services/fleet/clusters.jobs.js'
import { refreshUsage, type ClusterDeps } from '../services/fleet/clusters.service.js'
import { createSimulatedFleetProvider } from '../services/fleet/fleet.provider.js'
import { scaleFleet } from '../services/fleet/fleet.scaling.js'
import { checkHostSecret, reapDeadHosts, recordHeartbeats, type HeartbeatCall } from '../services/hosts/hosts.service.js'
import { createUploadLogJob } from '../services/logs/logs.jobs.js'
import { expireLogs, requeueSpooled, type LogDeps } from '../services/logs/logs.service.js'
import { createLocalStore } from '../services/logs/logs.store.js'

declare module 'fastify' {
  interface FastifyInstance {
    logDeps: LogDeps
    clusterDeps: ClusterDeps
    rollDeps: RollDeps
    /** Concurrent host heartbeats, recorded together (recordHeartbeats). */
    heartbeats: Batcher<HeartbeatCall, boolean>
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
  const { hosts, logs, fleet } = app.config
  if (hosts.identityCert) {
    // A certificate that cannot be read would turn every identity handshake into a 500: refuse to start.
    try {
      createPublicKey(hosts.identityCert)
    } catch {
      throw new Error('config: AWS_IDENTITY_CERT is not a PEM certificate or public key')
    }
  }
  app.decorateRequest('hostSecret', null)
  // The host's secret (X-Host-Secret, or AuthToken in the body as the original agent sent it: so this scheme
  // is checked once the body is parsed, still before it is validated). The heartbeat's UPDATE checks it again.
  const knownSecrets = new Map<string, string>()
  app.securityHandlers.hostSecret = Object.assign(async (request: FastifyRequest) => {
    const header = request.headers['x-host-secret']
    const secret = typeof header === 'string' ? header : (request.body as { AuthToken?: unknown } | undefined)?.AuthToken
    if (typeof secret !== 'string' || secret.length === 0) throw new WrongHostSecret()
    await checkHostSecret(app.db, (request.params as { hostId?: string }).hostId ?? '', secret, knownSecrets)
    request.hostSecret = secret
  }, { readsBody: true })
  // Heartbeats that arrive while others are being recorded share the next UPDATE (one round trip and one
  // commit for many hosts); how many shows as host_heartbeat_batch_size.
  const heartbeatBatchSizes = new Histogram({
    name: 'host_heartbeat_batch_size',
    help: 'Host heartbeats per UPDATE (group commit of concurrent POST /v1/hosts/{id}/heartbeats)',
    buckets: [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000],
    registers: [app.metrics.registry]
  })
  app.decorate('heartbeats', new Batcher((calls: HeartbeatCall[]) => recordHeartbeats(app.db, calls), {
    maxSize: hosts.heartbeatBatchSize,
    maxInFlight: 2,
    onBatch: (size) => { heartbeatBatchSizes.observe(size) }
  }))
  app.schedules.add({ name: 'reap-hosts', everyMs: hosts.reapIntervalMs, run: () => reapDeadHosts(app.db, hosts.deadAfterMs) })

  // The S3 SDK loads only when a bucket is configured.
  const store = logs.bucket
    ? (await import('../services/logs/logs.s3-store.js')).createS3Store({ bucket: logs.bucket, region: logs.s3Region, endpoint: logs.s3Endpoint, forcePathStyle: logs.s3ForcePathStyle })
    : createLocalStore(logs.folder)
  app.decorate('logDeps', { queue: app.queue, store, maxInflatedBytes: app.config.logs.maxInflatedBytes, log: app.log })
  app.queue.define(createUploadLogJob(app.db, store))
  app.schedules.add({ name: 'log-spool', everyMs: logs.spoolIntervalMs, run: () => requeueSpooled(app.db, app.queue, logs.spoolIntervalMs) })
  app.schedules.add({ name: 'log-retention', everyMs: 3_600_000, run: () => expireLogs(app.db, store, logs.retentionDays) })

  // Clusters: EC2 launch templates, Auto Scaling groups, ECS capacity providers and clusters (or the simulator).
  const provider = app.config.containers.provider === 'aws'
    ? (await import('../services/fleet/fleet.aws-provider.js')).createAwsFleetProvider({
        maxAttempts: app.config.containers.awsMaxAttempts,
        subnets: (region) => perRegion(fleet.subnets, region),
        securityGroups: (region) => perRegion(fleet.securityGroups, region),
        // loadConfig refuses CLOUD_PROVIDER=aws without them.
        instanceProfile: fleet.instanceProfile!,
        publicIp: fleet.publicIp!
      })
    : createSimulatedFleetProvider()
  app.decorate('clusterDeps', {
    queue: app.queue, provider, containersPerHost: fleet.containersPerHost, jobTimeoutMs: fleet.jobTimeoutMs
  })
  app.queue.define(...createClusterJobs({
    db: app.db,
    provider,
    queue: app.queue,
    hostAgent: {
      // With CLOUD_PROVIDER=aws, PUBLIC_URL is required (loadConfig); the simulated hosts call nobody.
      apiUrl: app.config.publicUrl ?? `http://${app.config.host}:${app.config.port}`,
      handshake: hosts.handshake,
      bootstrapSecret: hosts.bootstrapSecret
    },
    pollMs: fleet.pollMs,
    log: app.log
  }))
  app.decorate('rollDeps', { queue: app.queue, provider, pollMs: fleet.pollMs, jobTimeoutMs: fleet.jobTimeoutMs * 12 })
  app.queue.define(...createRollJobs(app.db, app.rollDeps))
  app.schedules.add({
    name: 'fleet-scaling',
    everyMs: fleet.scalingIntervalMs,
    run: () => scaleFleet(app.db, app.clusterDeps, { instanceType: fleet.instanceType, clusterMaxSize: fleet.clusterMaxSize, emptyGraceMs: fleet.emptyClusterGraceMs })
  })
  app.schedules.add({
    name: 'cluster-usage',
    everyMs: fleet.usageIntervalMs,
    run: async () => {
      const active = await app.db.selectFrom('cluster').select(['id', 'name', 'region_code']).where('status', '=', 'active').execute()
      let refreshed = 0
      for (const cluster of active) {
        try {
          await refreshUsage(app.db, provider, cluster)
          refreshed++
        } catch (err) {
          app.log.warn({ err, cluster: cluster.name }, 'cluster usage not refreshed')
        }
      }
      return { refreshed }
    }
  })
}, { fastify: '5.x', name: 'fleet', dependencies: ['config', 'db', 'queue', 'metrics', 'auth', 'schedules', 'containers'] })

/** `a,b` for every region, or `us-east-1=a|b;eu-west-1=c` per region: the region's, comma-separated; undefined: none. */
export function perRegion (setting: string, region: string): string | undefined {
  if (!setting.trim()) return undefined
  if (!setting.includes('=')) return setting.split(/[,|]/).map((s) => s.trim()).filter(Boolean).join(',')
  const entry = setting.split(';').map((part) => part.split('=')).find(([r]) => r?.trim() === region)
  return entry?.[1]?.split('|').map((s) => s.trim()).filter(Boolean).join(',') || undefined
}
