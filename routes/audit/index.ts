import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** The audit trail, for admins. */
export default async function auditRoutes (app: FastifyInstance) {
  app.registerOperations('audit', handlers)
}
