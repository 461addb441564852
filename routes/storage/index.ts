import fastifyCookie from '@fastify/cookie'
import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Cloud storage connections: providers, connecting through OAuth, listing, disconnecting. */
export default async function storageRoutes (app: FastifyInstance) {
  // The nonce cookie that binds a connection's OAuth flow to the browser that opened its authorization page.
  await app.register(fastifyCookie)
  app.registerOperations('storage', handlers)
}
