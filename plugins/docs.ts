import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import { stringify } from 'yaml'
import { etagOf } from './edge-cache.js'

/**
 * The contract, served as written: /openapi.json and /openapi.yaml (serialised once at start-up, with a
 * strong ETag), and Swagger UI at /docs where "Authorize" persists the bearer token across reloads.
 */
export default fp(async function docsPlugin (app) {
  const document = structuredClone(app.openapi.document)
  if (app.config.publicUrl) document.servers = [{ url: app.config.publicUrl, description: 'This server' }]

  await app.register(fastifySwagger, { mode: 'static', specification: { document: document as never } })
  await app.register(fastifySwaggerUi, {
    routePrefix: '/docs',
    uiConfig: { persistAuthorization: true, deepLinking: true, tryItOutEnabled: true, displayRequestDuration: true },
    staticCSP: true
  })

  const bodies = {
    json: { type: 'application/json', body: JSON.stringify(document) },
    yaml: { type: 'application/yaml', body: stringify(document) }
  }
  for (const [ext, { type, body }] of Object.entries(bodies)) {
    const etag = etagOf(body)
    app.get(`/openapi.${ext}`, { schema: { hide: true } }, async (request, reply) => {
      // Edge-cached like the public reads; a deploy brings a new document (purge tag `openapi`).
      reply.header('cache-control', 'public, max-age=300, s-maxage=3600, stale-while-revalidate=300, stale-if-error=86400').header('etag', etag)
        .header('cdn-cache-control', 'max-age=3600').header('surrogate-control', 'max-age=3600')
        .header('surrogate-key', 'openapi').header('xkey', 'openapi').header('vary', 'Accept-Encoding')
      if (request.headers['if-none-match'] === etag) return reply.code(304).send()
      return reply.type(type).send(body)
    })
  }
}, { fastify: '5.x', name: 'docs', dependencies: ['openapi-routes'] })
