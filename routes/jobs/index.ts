import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Long-running work, readable by its owner. */
export default async function jobsRoutes (app: FastifyInstance) {
  app.registerOperations('jobs', handlers)
}
