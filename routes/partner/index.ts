import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** The partner API: a partner's own users, their usage and running containers (partner API keys). */
export default async function partnerRoutes (app: FastifyInstance) {
  app.registerOperations('partner', handlers)
}
