import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Liveness, readiness, metrics and the JWKS. */
export default async function systemRoutes (app: FastifyInstance) {
  app.registerOperations('system', handlers)
}
