import type { FastifyInstance } from 'fastify'
import fp from 'fastify-plugin'
import { createTokenCipher, parseTokenKeys } from '../../services/storage/storage.crypto.js'
import { freshTokens, loadProviders, type StateStore, type StorageDeps } from '../../services/storage/storage.service.js'
import storageRoutes from './index.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Decorated on the storage feature's context only. */
    storageDeps: StorageDeps
    /** The user's cloud storage tokens, refreshed as needed (the storage feature's contract: containers mount them). */
    storageTokens (userId: string): Promise<Array<{ provider: string, accessToken: string }>>
  }
}

/** Cloud storage connections: providers from config, token encryption keys, the store of OAuth tickets and states. */
export async function storageDepsOf (app: FastifyInstance): Promise<StorageDeps> {
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
  return {
    providers: await loadProviders(storage.providersJson, storage.clients),
    cipher: createTokenCipher(parseTokenKeys(storage.tokenKeys, app.jwtSigningSecret)),
    states,
    authorizeUrl: `${base}/v1/storage/authorize`,
    callbackUrl: `${base}/v1/storage/callback`,
    clientRedirect: storage.clientRedirect,
    timeoutMs: storage.httpTimeoutMs,
    now: () => app.clock.now(),
    log: app.log
  }
}

/**
 * The storage feature: providers, connecting through OAuth, listing, disconnecting. Its dependencies stay in
 * its own context; the contract it exposes (fastify-plugin) is `storageTokens`, for the containers feature.
 */
export default fp(async function storageFeature (app) {
  const deps = await storageDepsOf(app)
  app.decorate('storageTokens', (userId: string) => freshTokens(app.db, deps, userId))

  await app.register(async function storageContext (storage) {
    storage.decorate('storageDeps', deps)
    await storage.register(storageRoutes)
  })
}, { fastify: '5.x', name: 'storage', dependencies: ['config', 'clock', 'db', 'auth', 'redis', 'openapi-routes'] })
