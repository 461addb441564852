import formbody from '@fastify/formbody'
import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Newsletter subscriptions: double opt-in, and RFC 8058 one-click unsubscribe (a form POST from mail clients). */
export default async function newsletterRoutes (app: FastifyInstance) {
  await app.register(formbody, { bodyLimit: 1024 })
  app.registerOperations('newsletter', handlers)
}
