import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** The operators' edge-cache purge. */
export default async function cacheRoutes (app: FastifyInstance) {
  app.registerOperations('cache', handlers)
}
