import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Maintenance windows and the public status. */
export default async function maintenanceRoutes (app: FastifyInstance) {
  app.registerOperations('maintenance', handlers)
}
