import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Calls from the streaming containers themselves, authenticated by their own secret. */
export default async function containerAgentRoutes (app: FastifyInstance) {
  app.registerOperations('container-agent', handlers)
}
