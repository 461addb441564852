import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Operators' view of the fleet: hosts and the per-region overview. */
export default async function fleetRoutes (app: FastifyInstance) {
  app.registerOperations('fleet', handlers)
}
