import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Signing in (password, Google), refreshing and signing out. */
export default async function sessionsRoutes (app: FastifyInstance) {
  app.registerOperations('sessions', handlers)
}
