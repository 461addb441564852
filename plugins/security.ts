import fastifyCors from '@fastify/cors'
import fastifyHelmet from '@fastify/helmet'
import fp from 'fastify-plugin'

/** Helmet headers and CORS for the configured origins only (none by default). */
export default fp(async function securityPlugin (app) {
  await app.register(fastifyHelmet, { global: true })
  const origins = app.config.http.corsOrigins
  await app.register(fastifyCors, {
    origin: origins.length > 0 ? [...origins] : false,
    credentials: true,
    exposedHeaders: ['Location', 'Retry-After', 'X-Request-Id', 'ETag', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'],
    maxAge: 600
  })
}, { fastify: '5.x', name: 'security', dependencies: ['config'] })
