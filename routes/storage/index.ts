import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Cloud storage connections: providers, connecting through OAuth, listing, disconnecting. */
export default async function storageRoutes (app: FastifyInstance) {
  app.registerOperations('storage', handlers)
}
