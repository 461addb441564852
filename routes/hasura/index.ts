import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** The Hasura authentication webhook. */
export default async function hasuraRoutes (app: FastifyInstance) {
  app.registerOperations('hasura', handlers)
}
