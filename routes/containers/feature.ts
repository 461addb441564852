import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { Histogram } from 'prom-client'
import { createContainerJobs } from '../../services/containers/containers.jobs.js'
import { reapOrphans, reapSilent, reapStuckJobs, refillWarmPools, resumeStalledStarts } from '../../services/containers/containers.schedules.js'
import { authenticateContainer, ping } from '../../services/containers/containers.agent.js'
import { assignmentBatcher } from '../../services/containers/containers.assignment.js'
import { sendStartValues, sendStartValuesJob } from '../../services/containers/containers.host-agent.js'
import { stopAllOf } from '../../services/containers/containers.lifecycle.js'
import type { ContainerFeed } from '../../services/containers/containers.events.js'
import { createGrantTokens, type GrantDeps } from '../../services/containers/containers.grants.js'
import { enforceSessionLimits } from '../../services/containers/containers.sessions.js'
import type { ContainerDeps } from '../../services/containers/containers.service.js'
import { createHostAgentClient } from '../../services/hosts/agent-client.js'
import type { Container } from '../../db/types.js'
import { createSimulatedProvider, type CloudProvider } from '../../services/containers/provider.js'
import { apps as seededApps } from '../../db/seed-data.js'
import containerAgentRoutes from '../container-agent/index.js'
import containersRoutes from './index.js'
import warmPoolRoutes from '../warm-pools/index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Decorated on the containers feature's context only. */
    containerDeps: ContainerDeps
    /** Container changes for the container event streams of this process (containers feature's context only). */
    containerFeed: ContainerFeed
    /**
     * How connection grants are signed, verified and bounded (the containers feature's contract: the hosts
     * feature introspects grants with it).
     */
    grantDeps: GrantDeps
    /**
     * The calling container of a request (X-Container-Id + X-Container-Secret), verified once per request; null
     * when there is no valid one (the containers feature's contract: the rate limiter keys by it).
     */
    verifyContainer (request: FastifyRequest): Promise<Container | null>
    /** The task definition the cloud has under a name, or null (the containers feature's contract: the catalog validates with it). */
    describeTaskDefinition: CloudProvider['describeTaskDefinition']
  }
}

/**
 * The containers feature: assignment, reading and stopping containers, the warm pools (tag warm-pools) and
 * the containers' own calls (container-agent). It wires the cloud provider (ECS, or the simulator that also
 * pings for its containers), the start/stop jobs, the host agent's job, the worker's schedules (warm pools,
 * reaping) and the account deletion's step; its dependencies stay in its own context. The contract it
 * exposes (fastify-plugin) is the containers' credential: the containerSecret security scheme (the logs
 * feature's uploads take it too) and `verifyContainer`.
 */
export default fp(async function containersFeature (app) {
  const { config } = app
  const settings = config.containers
  // The AWS SDK clients are loaded only when used (they cost ~40 MB and ~0.3 s of start-up).
  const provider = settings.provider === 'aws'
    ? (await import('../../services/containers/aws-provider.js')).createAwsProvider({ containerName: settings.ecsContainerName, maxAttempts: settings.awsMaxAttempts })
    : createSimulatedProvider({
      startDelayMs: settings.simulatedStartMs,
      // Well inside the reaper's silence limit.
      pingEveryMs: Math.max(50, Math.floor(settings.pingTimeoutMs / 3)),
      // The simulated container pings as a real one would: with the secret it was started with.
      onRunning: async (id, secret) => ping(app.db, deps, await authenticateContainer(app.db, id, secret), true),
      // What the simulated cloud knows: SIMULATED_TASK_DEFINITIONS, or the seeded catalog's (fractal-<app>:1).
      taskDefinitions: settings.simulatedTaskDefinitions ?? seededApps.map((a) => `fractal-${a.id}:1`)
    })
  app.decorate('describeTaskDefinition', (region: string, taskDefinition: string) => provider.describeTaskDefinition(region, taskDefinition))

  // The host agent hears of each container handed to a user (its start values), through a job with retries.
  const agent = config.hosts.agent
  if (agent.enabled && !agent.secret) throw new Error('config: HOST_AGENT_SECRET is required when HOST_AGENT_ENABLED=true')
  const onReady = agent.enabled
    ? async (container: Container) => {
      if (!container.user_id || !container.host_ip) return
      await app.queue.enqueue(sendStartValuesJob, { containerId: container.id }, { retries: 5 })
    }
    : undefined
  if (agent.enabled) {
    const client = createHostAgentClient({ scheme: agent.scheme as 'http' | 'https', port: agent.port, secret: agent.secret!, timeoutMs: agent.timeoutMs })
    app.queue.define({
      ...sendStartValuesJob,
      handle: (data: { containerId: string }) => sendStartValues(app.db, client, data.containerId, (userId) => app.storageTokens(userId))
    })
  }
  // How many assignments share a transaction: 1 when calm, more under load (see assignmentBatcher).
  const batchSizes = new Histogram({
    name: 'container_assignment_batch_size',
    help: 'Assignments per PostgreSQL transaction (group commit of concurrent POST /v1/containers)',
    buckets: [1, 2, 4, 8, 16, 32, 48, 60],
    registers: [app.metrics.registry]
  })
  const deps: ContainerDeps = {
    queue: app.queue,
    startTimeoutMs: settings.startTimeoutMs,
    log: app.log,
    assignments: assignmentBatcher(app.db, { ...settings.assignBatch, onBatch: (size) => { batchSizes.observe(size) } }),
    ...(app.entitlementTerms ? { entitlement: { terms: app.entitlementTerms, appUrl: config.appUrl } } : {}),
    ...(onReady ? { onReady } : {})
  }
  // A deleted account's containers are stopped before the account row goes.
  app.accountDeletionSteps.push((accountId) => stopAllOf(app.db, deps, accountId))
  app.queue.define(...createContainerJobs({
    db: app.db,
    provider,
    queue: app.queue,
    callbackUrl: config.publicUrl ?? `http://${config.host}:${config.port}`,
    timing: { pollMs: settings.pollMs, pollBudgetMs: settings.pollBudgetMs, firstPingTimeoutMs: settings.firstPingTimeoutMs },
    ...(onReady ? { onReady } : {}),
    log: app.log
  }))

  const ender = { db: app.db, provider }
  // A start job is stalled when nothing touched it for CONTAINER_STALLED_MS (5 minutes): one merely waiting
  // in a busy queue is not; if it was, its superseded payload steps aside (see the start job).
  const stalledMs = settings.stalledMs
  app.schedules.add({
    name: 'warm-pools',
    everyMs: settings.warmPoolIntervalMs,
    run: () => refillWarmPools(app.db, { queue: app.queue, startTimeoutMs: settings.startTimeoutMs, maxStarts: settings.warmPoolMaxStarts, maxAgeSeconds: settings.warmPoolMaxAgeS, clock: app.clock })
  })
  app.schedules.add({
    name: 'reap-containers',
    everyMs: settings.reapIntervalMs,
    run: async () => ({
      ...(await reapSilent(app.db, ender, settings.pingTimeoutMs)),
      ...(await reapStuckJobs(app.db, ender)),
      ...(await resumeStalledStarts(app.db, { queue: app.queue }, stalledMs))
    })
  })
  app.schedules.add({
    name: 'reap-orphan-tasks',
    everyMs: Math.max(settings.reapIntervalMs, 60_000),
    run: () => reapOrphans(app.db, { ...ender, log: app.log }, settings.orphanGraceMs)
  })

  // Session limits (docs/sessions.md): warned ahead, then ended through the usual stop, by the app's clock.
  const sessions = settings.sessions
  app.schedules.add({
    name: 'session-limits',
    everyMs: sessions.intervalMs,
    run: () => enforceSessionLimits(app.db, { queue: app.queue, clock: app.clock, ...sessions })
  })

  // Connection grants: signed with the access tokens' key (the JWKS serves it), for another audience.
  app.decorate('grantDeps', {
    clock: app.clock,
    tokens: createGrantTokens({ privateKey: app.jwtSigningSecret, kid: app.jwks.keys[0]!.kid, issuer: config.jwt.issuer }),
    bounds: settings.grants
  } satisfies GrantDeps)

  // The container event streams hear of changes to their container's row: made here at once, made elsewhere
  // over the broadcast (`containers:changed`), and every resync interval anyway (a message lost meanwhile).
  const watchers = new Map<string, Set<() => void>>()
  const notify = (ids: unknown) => {
    const targets = Array.isArray(ids) ? ids.filter((id): id is string => typeof id === 'string') : [...watchers.keys()]
    for (const id of targets) for (const listener of watchers.get(id) ?? []) listener()
  }
  await app.broadcast.subscribe('containers:changed', notify)
  app.broadcast.onReconnect(async () => { notify(null) })
  app.dbWrites.on('container', (ids) => {
    notify(ids)
    app.broadcast.publish('containers:changed', ids).catch(() => {})
  })
  const resync = setInterval(() => { if (watchers.size > 0) notify(null) }, config.eventStreams.resyncMs)
  resync.unref()
  app.addHook('onClose', async () => { clearInterval(resync) })
  const containerFeed: ContainerFeed = {
    watch (id, listener) {
      const set = watchers.get(id) ?? new Set()
      watchers.set(id, set.add(listener))
      return () => {
        set.delete(listener)
        if (set.size === 0 && watchers.get(id) === set) watchers.delete(id)
      }
    }
  }

  // Containers call back with their own secret (X-Container-Secret), for the container named in the path
  // (or, on routes without one, in X-Container-Id). The outcome is kept per request, so the rate limiter
  // (which keys `key: container` operations by the verified container and runs first) and the security
  // handler share one lookup.
  const callers = new WeakMap<FastifyRequest, Promise<Container>>()
  const idOf = (request: FastifyRequest) => {
    const header = request.headers['x-container-id']
    return (request.params as { containerId?: string } | undefined)?.containerId ?? (typeof header === 'string' ? header : '')
  }
  function containerOf (request: FastifyRequest): Promise<Container> {
    let outcome = callers.get(request)
    if (!outcome) {
      const secret = request.headers['x-container-secret']
      outcome = authenticateContainer(app.db, idOf(request), typeof secret === 'string' ? secret : undefined)
      callers.set(request, outcome)
    }
    return outcome
  }
  // The limiter runs before validation: no secret or no well-formed id, no lookup (a user's request, or
  // garbage, costs the limiter no query here).
  const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i
  app.decorate('verifyContainer', (request: FastifyRequest) =>
    request.headers['x-container-secret'] === undefined || !uuid.test(idOf(request)) ? Promise.resolve(null) : containerOf(request).catch(() => null))
  app.securityHandlers.containerSecret = async (request) => {
    request.container = await containerOf(request)
  }
  app.decorateRequest('container', null)

  await app.register(async function containersContext (containers) {
    containers.decorate('containerDeps', deps)
    containers.decorate('containerFeed', containerFeed)
    await containers.register(containersRoutes)
    await containers.register(containerAgentRoutes)
    await containers.register(warmPoolRoutes)
  })
}, { fastify: '5.x', name: 'containers', dependencies: ['config', 'db', 'queue', 'metrics', 'auth', 'accounts', 'schedules', 'billing', 'storage', 'openapi-routes', 'broadcast', 'clock'] })

declare module 'fastify' {
  interface FastifyRequest {
    /** The calling container, once containerSecret accepted it. */
    container: import('../../db/types.js').Container | null
  }
}
