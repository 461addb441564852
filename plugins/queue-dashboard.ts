import { createRequire } from 'node:module'
import fastifyCookie from '@fastify/cookie'
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import BeeQueue from 'bee-queue'
import { DomainError } from '../services/errors.js'
import { queueDashboard, queueFamilies } from '../services/queue.js'
import { beeRedisOptions, logQueueErrors } from './queue.js'

const { path: dashboardPath, cookie: dashboardCookie } = queueDashboard

type Handler = (req: unknown, res: unknown) => void
type RedisClient = Record<string | symbol, any>

/**
 * bull-arena reads Redis INFO with `await client.info()`, but bee-queue 2's node-redis 3 client takes a
 * callback and returns no promise (the page then crashes on `doc.split`). The queues Arena opens get a
 * client whose `info` also answers as a promise; everything else passes through.
 */
function promisedInfo (client: RedisClient | null): RedisClient | null {
  if (!client) return client
  return new Proxy(client, {
    get (target, prop) {
      if (prop === 'info') {
        return (...args: unknown[]) => typeof args.at(-1) === 'function'
          ? target.info(...args)
          : new Promise((resolve, reject) => target.info(...args, (err: Error | null, value: string) => err ? reject(err) : resolve(value)))
      }
      const value = Reflect.get(target, prop, target)
      return typeof value === 'function' ? value.bind(target) : value
    }
  })
}

// bee-queue assigns `client` in its constructor, before a subclass's fields exist: kept in a WeakMap.
const clients = new WeakMap<object, RedisClient | null>()
/** The queue class Arena opens, remembering each queue in `opened` so that the app closes them. */
function arenaQueueClass (opened: Set<BeeQueue>, log: FastifyBaseLogger) {
  return class ArenaBeeQueue extends BeeQueue {
    constructor (...args: ConstructorParameters<typeof BeeQueue>) {
      super(...args)
      logQueueErrors(this, log, { family: this.name, role: 'dashboard' })
      opened.add(this)
    }

    get client () { return clients.get(this) ?? null }
    set client (value: RedisClient | null) { clients.set(this, promisedInfo(value)) }
  }
}

/**
 * The queue dashboard at /admin/queues: bull-arena (Express) over our bee-queue queues, admins only. A
 * browser gets there through `POST /v1/admin/queue-dashboard/session` (an admin bearer token), which sets an
 * HttpOnly, SameSite=Strict cookie scoped to this path; tools may send the bearer token instead. Express
 * gets the raw request (Fastify leaves bodies unread here and hijacks the reply). bull-arena and Express
 * load on the first request, not at start-up. Without Redis (embedded defaults) there is nothing to show:
 * 503 saying so.
 */
export default async function queueDashboardPlugin (app: FastifyInstance) {
  const { url, prefix } = app.config.redis
  await app.register(fastifyCookie)
  // Leave every body for Express to read.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', (_request, _payload, done) => { done(null) })

  const opened = new Set<BeeQueue>()
  let arena: Handler | null = null
  const load = (): Handler => {
    if (arena) return arena
    const require = createRequire(import.meta.url)
    const Arena = require('bull-arena') as (config: object, options: object) => Handler
    arena = Arena({
      Bee: arenaQueueClass(opened, app.log),
      queues: queueFamilies.map((name) => ({ type: 'bee', name, hostId: 'fractal', prefix: `${prefix}bq`, redis: beeRedisOptions(url!, app.log, { family: name, role: 'dashboard' }, true) }))
    }, { basePath: dashboardPath, disableListen: true, useCdn: false })
    return arena
  }

  // Arena's own queues (one Redis connection each) end with the app.
  app.addHook('onClose', async () => {
    await Promise.all([...opened].map((q) => q.close(1000).catch(() => {})))
    opened.clear()
  })

  async function adminOnly (request: FastifyRequest, reply: FastifyReply) {
    const cookie = request.cookies[dashboardCookie]
    const claims = await app.verifyBearer(request.headers.authorization ?? (cookie ? `Bearer ${cookie}` : undefined))
    if (!claims) {
      // A browser without the session: say how to get one.
      throw new DomainError('unauthorized', 'Unauthorized', 'The queue dashboard needs an admin: POST /v1/admin/queue-dashboard/session with an admin bearer token sets its cookie (or send the token as Authorization).')
    }
    if (!(claims.scopes ?? []).includes('admin')) throw new DomainError('forbidden', 'Forbidden', 'The queue dashboard is for admins (scope admin).')
    if (!url) throw new DomainError('unavailable', 'Queue dashboard unavailable', 'The queues run in process (no REDIS_URL): there is no dashboard to show.', { retryAfter: 3600 })
  }

  const handler = async (request: FastifyRequest, reply: FastifyReply) => {
    reply.hijack()
    load()(request.raw, reply.raw)
  }
  for (const path of [dashboardPath, `${dashboardPath}/*`]) {
    app.route({ method: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'], url: path, schema: { hide: true }, preHandler: adminOnly, handler })
  }
}
