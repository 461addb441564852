import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Streamed apps: assignment from the warm pool or a start job, reading and stopping them. */
export default async function containersRoutes (app: FastifyInstance) {
  app.registerOperations('containers', handlers)
}
