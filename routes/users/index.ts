import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Operators' view of every account. */
export default async function usersRoutes (app: FastifyInstance) {
  app.registerOperations('users', handlers)
}
