import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Operators' side of the partner API: partners and their API keys. */
export default async function partnersRoutes (app: FastifyInstance) {
  app.registerOperations('partners', handlers)
}
