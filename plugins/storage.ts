import fp from 'fastify-plugin'
import { createTokenCipher, parseTokenKeys } from '../services/storage/storage.crypto.js'
import { loadProviders, type StateStore, type StorageDeps } from '../services/storage/storage.service.js'

declare module 'fastify' {
  interface FastifyInstance {
    storageDeps: StorageDeps
  }
}

/** Cloud storage connections: providers from config, token encryption keys, the store of OAuth tickets and states. */
export default fp(async function storagePlugin (app) {
  const { storage, publicUrl, host, port } = app.config
  const memory = new Map<string, { value: string, until: number }>()
  const states: StateStore = app.hasDecorator('redis')
    ? {
        async put (key, value, ttl) { await app.redis.set(`storage-${key}`, value, 'EX', ttl) },
        async take (key) { return app.redis.getdel(`storage-${key}`) }
      }
    : {
        async put (key, value, ttl) { memory.set(key, { value, until: Date.now() + ttl * 1000 }) },
        async take (key) {
          const entry = memory.get(key)
          memory.delete(key)
          return entry && entry.until > Date.now() ? entry.value : null
        }
      }
  const base = publicUrl ?? `http://${host}:${port}`
  app.decorate('storageDeps', {
    providers: await loadProviders(storage.providersJson, storage.clients),
    cipher: createTokenCipher(parseTokenKeys(storage.tokenKeys, app.jwtSigningSecret)),
    states,
    authorizeUrl: `${base}/v1/storage/authorize`,
    callbackUrl: `${base}/v1/storage/callback`,
    clientRedirect: storage.clientRedirect,
    timeoutMs: storage.httpTimeoutMs,
    now: Date.now,
    log: app.log
  })
}, { fastify: '5.x', name: 'storage', dependencies: ['config', 'auth', 'redis'] })
