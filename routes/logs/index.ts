import type { FastifyInstance } from 'fastify'
import { handlers } from './handlers.js'

/** Logs of containers and client apps: upload, list (with download URLs), download. */
export default async function logsRoutes (app: FastifyInstance) {
  // Gzipped logs arrive as raw bytes (text/plain is parsed as a string by Fastify already).
  app.addContentTypeParser('application/gzip', { parseAs: 'buffer', bodyLimit: app.config.logs.maxBytes }, (_request, body, done) => done(null, body))
  app.registerOperations('logs', handlers)
}
