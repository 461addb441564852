import { createPublicKey } from 'node:crypto'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import fp from 'fastify-plugin'
import type { FastifyRequest } from 'fastify'
import { Histogram } from 'prom-client'
import { Batcher } from '../../services/batcher.js'
import { WrongHostSecret } from '../../services/hosts/hosts.errors.js'
import { newSecret } from '../../services/hashing.js'
import { checkHostSecret, reapDeadHosts, recordHeartbeats, type HeartbeatCall, type HostSettings } from '../../services/hosts/hosts.service.js'
import hostsRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Concurrent host heartbeats, recorded together (recordHeartbeats); decorated on the hosts feature's context only. */
    heartbeats: Batcher<HeartbeatCall, boolean>
    /** The handshake's settings: config.hosts, with the embedded bootstrap secret in development; on the hosts feature's context only. */
    hostSettings: HostSettings
  }
  interface FastifyRequest {
    /** The secret the calling host agent presented (checked by the operation itself). */
    hostSecret: string | null
  }
}

/**
 * Development without HOST_BOOTSTRAP_SECRET: the one generated in DATA_DIR/host-bootstrap-secret the first
 * time and kept across starts, so a host agent (or curl) can shake hands with a fresh `npm start`.
 */
async function embeddedBootstrapSecret (dataDir: string): Promise<{ secret: string, file: string }> {
  const file = join(dataDir, 'host-bootstrap-secret')
  const kept = (await readFile(file, 'utf8').catch(() => '')).trim()
  if (kept.length >= 16) return { secret: kept, file }
  const secret = `embedded-${newSecret()}`
  await mkdir(dataDir, { recursive: true })
  await writeFile(file, `${secret}\n`, { mode: 0o600 })
  return { secret, file }
}

/**
 * The hosts feature: the host agent's calls, the handshake and heartbeats (tag hosts). It wires the
 * hostSecret security scheme, the heartbeats' group commit and the dead-host schedule. It exposes nothing:
 * its plugin is encapsulated (fastify-plugin with `encapsulate: true`, for its name and dependencies only).
 */
export default fp(async function hostsFeature (app) {
  const { hosts } = app.config
  if (hosts.identityCert) {
    // A certificate that cannot be read would turn every identity handshake into a 500: refuse to start.
    try {
      createPublicKey(hosts.identityCert)
    } catch {
      throw new Error('config: AWS_IDENTITY_CERT is not a PEM certificate or public key')
    }
  }
  let bootstrapSecret = hosts.bootstrapSecret
  // Only NODE_ENV=development: production (and tests) accept no bootstrap handshake without a real secret.
  if (bootstrapSecret === null && app.config.env === 'development') {
    const embedded = await embeddedBootstrapSecret(app.config.dataDir)
    bootstrapSecret = embedded.secret
    app.log.warn({ file: embedded.file }, `EMBEDDED ONLY (no HOST_BOOTSTRAP_SECRET): host agents shake hands with the generated bootstrap secret ${bootstrapSecret} ` +
      '(POST /v1/hosts/handshake, docs/first-hour.md). Production never generates one: set a real HOST_BOOTSTRAP_SECRET there.')
  }
  app.decorate('hostSettings', { ...hosts, bootstrapSecret })
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

  await app.register(hostsRoutes)
}, { fastify: '5.x', name: 'hosts', dependencies: ['config', 'db', 'metrics', 'auth', 'schedules', 'openapi-routes', 'containers'], encapsulate: true })
