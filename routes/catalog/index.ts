import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Regions and the app catalog: public, edge-cached reads, and the operator's region switch. */
export default async function catalogRoutes (app: FastifyInstance) {
  app.registerOperations('catalog', handlers)
}
