import { randomUUID } from 'node:crypto'
import { isIP } from 'node:net'
import Fastify, { type FastifyInstance, type FastifyPluginAsync, type FastifyServerOptions } from 'fastify'
import authPlugin from './plugins/auth.js'
import broadcastPlugin from './plugins/broadcast.js'
import clockPlugin from './plugins/clock.js'
import configPlugin, { embeddedDefaults, simulatedCloudWarning, type Config } from './plugins/config.js'
import type { Clock } from './services/clock.js'
import dbPlugin from './plugins/db.js'
import docsPlugin from './plugins/docs.js'
import queueDashboardPlugin from './plugins/queue-dashboard.js'
import edgeCachePlugin from './plugins/edge-cache.js'
import eventStreamsPlugin from './plugins/event-streams.js'
import errorsPlugin, { clientErrorHandler, frameworkError } from './plugins/errors.js'
import auditPlugin from './plugins/audit.js'
import healthPlugin from './plugins/health.js'
import jobsPlugin from './plugins/jobs.js'
import jobFeedPlugin from './plugins/job-feed.js'
import metricsPlugin from './plugins/metrics.js'
import openapiRoutesPlugin from './plugins/openapi-routes.js'
import queuePlugin from './plugins/queue.js'
import rateLimitPlugin from './plugins/rate-limit.js'
import schedulesPlugin from './plugins/schedules.js'
import redisPlugin from './plugins/redis.js'
import securityPlugin from './plugins/security.js'
import throttlePlugin from './plugins/throttle.js'
import mailPlugin from './plugins/mail.js'
import accountsFeature from './routes/accounts/feature.js'
import catalogRoutes from './routes/catalog/index.js'
import containersFeature from './routes/containers/feature.js'
import fleetFeature from './routes/fleet/feature.js'
import hostsFeature from './routes/hosts/feature.js'
import logsFeature from './routes/logs/feature.js'
import billingFeature from './routes/billing/feature.js'
import storageFeature from './routes/storage/feature.js'
import jobsRoutes from './routes/jobs/index.js'
import maintenanceRoutes from './routes/maintenance/index.js'
import cacheRoutes from './routes/cache/index.js'
import auditRoutes from './routes/audit/index.js'
import hasuraRoutes from './routes/hasura/index.js'
import systemRoutes from './routes/system/index.js'
import partnersRoutes from './routes/partners/index.js'
import partnerRoutes from './routes/partner/index.js'
import usageFeature from './routes/usage/feature.js'

/**
 * One plugin per feature, in the order they register. A feature registers the spec tags it owns (beside its
 * wiring: its dependencies, jobs and schedules), and one that uses another's contract (fastify-plugin
 * `dependencies`) comes after it.
 */
export const features: FastifyPluginAsync[] = [
  systemRoutes,
  accountsFeature, // + sessions, users, newsletter; exposes accountDeletionSteps
  hasuraRoutes,
  billingFeature, // + stripe; exposes the entitlement; adds an account deletion step
  storageFeature, // exposes storageTokens
  containersFeature, // + container-agent; exposes the containers' credential; uses the three above
  catalogRoutes, // checks task definitions with the containers' cloud provider
  jobsRoutes,
  maintenanceRoutes,
  cacheRoutes,
  auditRoutes,
  hostsFeature,
  fleetFeature,
  logsFeature, // containers upload with the containers' credential
  partnersRoutes,
  partnerRoutes,
  usageFeature
]

export interface BuildOptions {
  /** Logger options (tests pass `false` or a stream). */
  logger?: FastifyServerOptions['logger']
  /** The feature plugins to register; all of them unless a contract test says otherwise. */
  features?: FastifyPluginAsync[]
  /** Another copy of the OpenAPI document (contract tests of the spec's extensions); openapi/openapi.yaml otherwise. */
  specPath?: string
  /** The time credentials and limits are measured by; the system's unless a test moves its own. */
  clock?: Clock
}

const requestIdPattern = /^[A-Za-z0-9._:-]{1,128}$/

/**
 * TRUST_PROXY for Fastify. A list of plain addresses (the usual load balancer or sidecar) becomes a set
 * lookup: a list handed to Fastify is compiled by proxy-addr, which parses every hop's address with
 * ipaddr.js on each read of `request.ip` (several per request: audit context, rate-limit key, log line).
 * Ranges (CIDR) and proxy-addr's names (loopback, uniquelocal...) keep proxy-addr's own matcher.
 */
export function trustProxyOption (list: readonly string[]): boolean | string[] | ((address: string, hop: number) => boolean) {
  if (list.length === 0) return false
  if (!list.every((entry) => isIP(entry) !== 0)) return [...list]
  const trusted = new Set(list)
  return (address) => trusted.has(address) || (address.startsWith('::ffff:') && trusted.has(address.slice(7)))
}

/** Query parameters that carry credentials (an OAuth code or state, a token, a storage ticket) never reach a log line. */
const secretParams = /([?&](?:code|state|token|ticket|access_token|refresh_token|id_token|client_secret|code_verifier)=)[^&#]*/gi

const requestLogShape = {
  req (req: { method?: string, url?: string, hostname?: string, ip?: string, socket?: { remotePort?: number } }) {
    return {
      method: req.method,
      url: req.url?.includes('?') ? req.url.replace(secretParams, '$1[redacted]') : req.url,
      hostname: req.hostname,
      remoteAddress: req.ip,
      remotePort: req.socket?.remotePort
    }
  }
}

function loggerFor (config: Config, given?: BuildOptions['logger']): FastifyServerOptions['logger'] {
  if (given === false) return false
  return {
    level: config.logLevel,
    ...(config.env === 'development' && process.stdout.isTTY ? { transport: { target: 'pino-pretty', options: { translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } } } : {}),
    ...(typeof given === 'object' ? given : {}),
    // Whatever logger a caller brings, credentials stay out of it.
    redact: ['req.headers.authorization', 'req.headers.cookie', 'req.headers["x-api-key"]', 'req.headers["x-container-secret"]', 'req.headers["x-host-secret"]', 'req.headers["stripe-signature"]'],
    serializers: requestLogShape
  }
}

/** Makes the app: infrastructure plugins in dependency order, then one plugin per feature (`features`). */
export async function buildApp (config: Config, options: BuildOptions = {}): Promise<FastifyInstance> {
  const app = Fastify({
    logger: loggerFor(config, options.logger),
    // X-Request-Id is accepted when it looks like an id, generated otherwise, and echoed (below).
    genReqId: (req) => {
      const given = req.headers['x-request-id']
      return typeof given === 'string' && requestIdPattern.test(given) ? given : randomUUID()
    },
    trustProxy: trustProxyOption(config.http.trustProxy),
    bodyLimit: config.http.bodyLimit,
    requestTimeout: config.http.requestTimeoutMs,
    connectionTimeout: config.http.requestTimeoutMs * 2,
    routerOptions: { maxParamLength: 200 },
    return503OnClosing: true,
    // PGlite (embedded) starts and migrates in seconds, not the default 10 s budget on a busy machine.
    pluginTimeout: 60_000,
    ajv: { customOptions: { strict: false } },
    frameworkErrors: frameworkError,
    clientErrorHandler,
    // Node checks the request timeout this often (30 s by default, so a trickling client outlived it).
    http: { connectionsCheckingInterval: Math.min(30_000, Math.max(250, Math.floor(config.http.requestTimeoutMs / 4))) }
  })
  // Hooks that do not wait on anything take a callback: an async hook costs a promise (and, with the audit
  // context's AsyncLocalStorage on, its async hooks) on every request.
  app.addHook('onSend', (request, reply, payload, done) => {
    reply.header('x-request-id', request.id)
    done(null, payload)
  })

  try {
    await app.register(configPlugin, { config })
    await app.register(clockPlugin, { clock: options.clock })
    for (const line of embeddedDefaults(config)) app.log.info(`embedded default: ${line}`)
    const simulated = simulatedCloudWarning(config)
    if (simulated) app.log.warn(simulated)

    await app.register(errorsPlugin)
    await app.register(auditPlugin)
    await app.register(dbPlugin)
    await app.register(redisPlugin)
    await app.register(broadcastPlugin)
    await app.register(queuePlugin)
    // Early: features register their own metrics (the assignment batch sizes) on its registry.
    await app.register(metricsPlugin)
    await app.register(jobsPlugin)
    await app.register(jobFeedPlugin)
    await app.register(schedulesPlugin)
    await app.register(securityPlugin)
    await app.register(authPlugin)
    await app.register(throttlePlugin)
    await app.register(mailPlugin)
    // edge-cache before rate-limit: a public read kept at the origin is answered before the limiter
    // spends a Redis round trip on it (both read route config in onRoute, so both precede every route).
    await app.register(edgeCachePlugin)
    await app.register(rateLimitPlugin)
    // Reads route config in onRoute too (the event-stream caps).
    await app.register(eventStreamsPlugin)
    await app.register(healthPlugin)
    await app.register(openapiRoutesPlugin, { specPath: options.specPath })
    await app.register(docsPlugin)
    await app.register(queueDashboardPlugin)

    for (const feature of options.features ?? features) await app.register(feature)
  } catch (err) {
    // A plugin that failed to load must not leave pools and sockets open behind it.
    await app.close().catch(() => {})
    throw err
  }
  return app
}
