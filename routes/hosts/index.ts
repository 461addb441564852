import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** The host agent's calls: the handshake and heartbeats. */
export default async function hostsRoutes (app: FastifyInstance) {
  app.registerOperations('hosts', handlers)
}
