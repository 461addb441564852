import fp from 'fastify-plugin'

type Listener = (message: unknown) => void

export interface Broadcast {
  /** Sends `message` to every process (this one excluded: callers apply their change locally first). */
  publish (topic: string, message: unknown): Promise<void>
  /** Receives what other processes publish on `topic` (resolves once subscribed). */
  subscribe (topic: string, listener: Listener): Promise<void>
  /** Runs after every (re)connection, to reload what may have been missed while away. */
  onReconnect (listener: () => Promise<void>): void
}

declare module 'fastify' {
  interface FastifyInstance {
    broadcast: Broadcast
  }
}

/**
 * Messages between the processes of one deployment (cache invalidation, revoked sessions, changed
 * accounts) over Redis pub/sub, with one subscriber connection for all topics. Without Redis there is one
 * process and nothing to tell.
 */
export default fp(async function broadcastPlugin (app) {
  const listeners = new Map<string, Listener[]>()
  const reconnects: Array<() => Promise<void>> = []
  const origin = `${process.pid}:${Math.random().toString(36).slice(2)}`
  const channelOf = (topic: string) => `${app.config.redis.prefix}broadcast:${topic}`

  if (!app.hasDecorator('redis')) {
    app.decorate('broadcast', {
      async publish () {},
      async subscribe (topic: string, listener: Listener) { listeners.set(topic, [...(listeners.get(topic) ?? []), listener]) },
      onReconnect () {}
    })
    return
  }

  const subscriber = app.redis.duplicate({ enableOfflineQueue: true, keyPrefix: '' })
  subscriber.on('error', (err) => app.log.warn({ err }, 'broadcast subscriber'))
  subscriber.on('message', (channel, raw) => {
    try {
      const { from, message } = JSON.parse(raw) as { from: string, message: unknown }
      if (from === origin) return
      const topic = channel.slice(channelOf('').length)
      for (const listener of listeners.get(topic) ?? []) listener(message)
    } catch (err) {
      app.log.warn({ err, channel }, 'broadcast message dropped')
    }
  })
  let connectedOnce = false
  subscriber.on('ready', () => {
    // The first connection is handled at start-up; later ones follow an outage.
    if (!connectedOnce) { connectedOnce = true; return }
    for (const reload of reconnects) reload().catch((err) => app.log.warn({ err }, 'broadcast reload'))
  })
  app.addHook('onClose', async () => { subscriber.disconnect() })

  app.decorate('broadcast', {
    async publish (topic: string, message: unknown) {
      await app.redis.publish(channelOf(topic), JSON.stringify({ from: origin, message }))
        .catch((err) => app.log.warn({ err, topic }, 'broadcast not published'))
    },
    async subscribe (topic: string, listener: Listener) {
      listeners.set(topic, [...(listeners.get(topic) ?? []), listener])
      await subscriber.subscribe(channelOf(topic))
    },
    onReconnect (listener: () => Promise<void>) { reconnects.push(listener) }
  })
}, { fastify: '5.x', name: 'broadcast', dependencies: ['config', 'redis'] })
