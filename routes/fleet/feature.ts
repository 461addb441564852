import fp from 'fastify-plugin'
import { createRollJobs, type RollDeps } from '../../services/fleet/ami.service.js'
import { createClusterJobs } from '../../services/fleet/clusters.jobs.js'
import { refreshActiveClusters, type ClusterDeps } from '../../services/fleet/clusters.service.js'
import { createSimulatedFleetProvider } from '../../services/fleet/fleet.provider.js'
import { scaleFleet } from '../../services/fleet/fleet.scaling.js'
import fleetRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Decorated on the fleet feature's context only. */
    clusterDeps: ClusterDeps
    rollDeps: RollDeps
  }
}

/**
 * The fleet feature: the operators' clusters, AMI rolls and fleet overview (tag fleet). It wires the fleet
 * provider (EC2 launch templates, Auto Scaling groups, ECS capacity providers and clusters, or the
 * simulator), the cluster and roll jobs, and the scaling and usage schedules. It exposes nothing: its
 * plugin is encapsulated (fastify-plugin with `encapsulate: true`, for its name and dependencies only).
 */
export default fp(async function fleetFeature (app) {
  const { hosts, fleet } = app.config
  // Clusters: EC2 launch templates, Auto Scaling groups, ECS capacity providers and clusters (or the simulator).
  const provider = app.config.containers.provider === 'aws'
    ? (await import('../../services/fleet/fleet.aws-provider.js')).createAwsFleetProvider({
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
    run: () => refreshActiveClusters(app.db, provider, app.log)
  })
  await app.register(fleetRoutes)
}, { fastify: '5.x', name: 'fleet', dependencies: ['config', 'db', 'queue', 'schedules', 'openapi-routes'], encapsulate: true })

/** `a,b` for every region, or `us-east-1=a|b;eu-west-1=c` per region: the region's, comma-separated; undefined: none. */
export function perRegion (setting: string, region: string): string | undefined {
  if (!setting.trim()) return undefined
  if (!setting.includes('=')) return setting.split(/[,|]/).map((s) => s.trim()).filter(Boolean).join(',')
  const entry = setting.split(';').map((part) => part.split('=')).find(([r]) => r?.trim() === region)
  return entry?.[1]?.split('|').map((s) => s.trim()).filter(Boolean).join(',') || undefined
}
