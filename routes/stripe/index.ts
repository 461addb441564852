import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Stripe's webhook. Its JSON arrives as raw bytes: the signature is over them, not over a re-serialisation. */
export default async function stripeRoutes (app: FastifyInstance) {
  app.removeContentTypeParser('application/json')
  app.addContentTypeParser('application/json', { parseAs: 'buffer', bodyLimit: 1024 * 1024 }, (_request, body, done) => done(null, body))
  app.registerOperations('stripe', handlers)
}
