import fp from 'fastify-plugin'
import { createTokenCipher, parseTokenKeys } from '../services/storage/storage.crypto.js'
import { loadProviders, type StateStore, type StorageDeps } from '../services/storage/storage.service.js'

declare module 'fastify' {
  interface FastifyInstance {
    storageDeps: StorageDeps
  }
}

/** Cloud storage connections: providers from config, token encryption keys, the OAuth state store. */
export default fp(async function storagePlugin (app) {
  const { storage, publicUrl, host, port } = app.config
  const memory = new Map<string, { value: string, until: number }>()
  const states: StateStore = app.hasDecorator('redis')
    ? {
        async put (state, value, ttl) { await app.redis.set(`storage-state:${state}`, value, 'EX', ttl) },
        async take (state) { return app.redis.getdel(`storage-state:${state}`) }
      }
    : {
        async put (state, value, ttl) { memory.set(state, { value, until: Date.now() + ttl * 1000 }) },
        async take (state) {
          const entry = memory.get(state)
          memory.delete(state)
          return entry && entry.until > Date.now() ? entry.value : null
        }
      }
  app.decorate('storageDeps', {
    providers: await loadProviders(storage.providersJson, storage.clients),
    cipher: createTokenCipher(parseTokenKeys(storage.tokenKeys, app.jwtSigningSecret)),
    states,
    callbackUrl: `${publicUrl ?? `http://${host}:${port}`}/v1/storage/callback`,
    clientRedirect: storage.clientRedirect,
    timeoutMs: storage.httpTimeoutMs,
    log: app.log
  })
}, { fastify: '5.x', name: 'storage', dependencies: ['config', 'auth', 'redis'] })
