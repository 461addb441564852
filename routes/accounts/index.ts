import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Sign-up, verification, password reset, and the signed-in user's own account and sessions. */
export default async function accountsRoutes (app: FastifyInstance) {
  app.registerOperations('accounts', handlers)
}
