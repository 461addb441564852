import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Plans, Stripe Checkout and portal, and my subscription. */
export default async function billingRoutes (app: FastifyInstance) {
  app.registerOperations('billing', handlers)
}
