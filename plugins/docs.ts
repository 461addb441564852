import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import type { FastifyInstance } from 'fastify'
import { stringify } from 'yaml'
import { etagOf } from './edge-cache.js'

type Document = Record<string, any>

const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options', 'trace']

/**
 * The operations tagged `tag`, with the components they reference (transitively), the security schemes
 * they use and that tag only: what a third party sees of the contract, and nothing else.
 */
export function documentForTag (document: Document, tag: string, info: { title: string, description: string }): Document {
  const paths: Document = {}
  const schemes = new Set<string>()
  for (const [path, item] of Object.entries<Document>(document.paths ?? {})) {
    const kept = Object.fromEntries(Object.entries(item).filter(([key, op]) => methods.includes(key) && op.tags?.includes(tag)))
    if (Object.keys(kept).length === 0) continue
    for (const op of Object.values<Document>(kept)) {
      for (const requirement of op.security ?? []) for (const scheme of Object.keys(requirement)) schemes.add(scheme)
    }
    paths[path] = { ...(item.parameters ? { parameters: item.parameters } : {}), ...kept }
  }

  const components: Document = {}
  const copy = (pointer: string) => {
    const [, kind, name] = pointer.match(/^#\/components\/([^/]+)\/([^/]+)$/) ?? []
    if (!kind || !name) throw new Error(`docs: cannot copy ${pointer} into the ${tag} document`)
    if (components[kind]?.[name] !== undefined) return
    const target = document.components?.[kind]?.[name]
    if (target === undefined) throw new Error(`docs: ${pointer} points nowhere`)
    ;(components[kind] ??= {})[name] = target
    walk(target)
  }
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk)
    if (node === null || typeof node !== 'object') return
    for (const [key, value] of Object.entries(node)) {
      if (key === '$ref' && typeof value === 'string') copy(value)
      else walk(value)
    }
  }
  walk(paths)
  if (schemes.size > 0) {
    components.securitySchemes = Object.fromEntries([...schemes].map((s) => [s, document.components.securitySchemes[s]]))
  }

  return {
    openapi: document.openapi,
    info: { ...document.info, ...info },
    ...(document.servers ? { servers: document.servers } : {}),
    tags: (document.tags ?? []).filter((t: { name: string }) => t.name === tag),
    security: [],
    paths,
    components
  }
}

/** A document served as written at `url` (.json and .yaml), serialised once, with a strong ETag; edge-cached. */
function serveDocument (app: FastifyInstance, base: string, document: Document) {
  const bodies = {
    json: { type: 'application/json', body: JSON.stringify(document) },
    yaml: { type: 'application/yaml', body: stringify(document) }
  }
  for (const [ext, { type, body }] of Object.entries(bodies)) {
    const etag = etagOf(body)
    app.get(`${base}.${ext}`, { schema: { hide: true } }, async (request, reply) => {
      // Edge-cached like the public reads; a deploy brings a new document (purge tag `openapi`).
      reply.header('cache-control', 'public, max-age=300, s-maxage=3600, stale-while-revalidate=300, stale-if-error=86400').header('etag', etag)
        .header('cdn-cache-control', 'max-age=3600').header('surrogate-control', 'max-age=3600')
        .header('surrogate-key', 'openapi').header('xkey', 'openapi').header('vary', 'Accept-Encoding')
      if (request.headers['if-none-match'] === etag) return reply.code(304).send()
      return reply.type(type).send(body)
    })
  }
}

/**
 * The contract, served as written: /openapi.json and /openapi.yaml (serialised once at start-up, with a
 * strong ETag), and Swagger UI at /docs where "Authorize" persists the bearer token across reloads. The
 * partner subset (operations tagged `partner`) is its own document, /partner/openapi.json and .yaml, with
 * its own Swagger UI at /partner/docs: partners see only what they can call.
 */
export default fp(async function docsPlugin (app) {
  const document = structuredClone(app.openapi.document)
  if (app.config.publicUrl) document.servers = [{ url: app.config.publicUrl, description: 'This server' }]
  const partnerDocument = documentForTag(document, 'partner', {
    title: 'Fractal partner API',
    description: 'Read-only views of your organisation\'s users, their container hours and their running containers. ' +
      'Every call takes a partner API key (`X-Api-Key`), which a Fractal operator makes for you and shows once. ' +
      'Errors are RFC 9457 `application/problem+json` bodies with a stable `code`; each key has its own rate limit (429 with `Retry-After`).'
  })

  await app.register(fastifySwagger, { mode: 'static', specification: { document: document as never } })
  const uiConfig = { persistAuthorization: true, deepLinking: true, tryItOutEnabled: true, displayRequestDuration: true }
  // Each Swagger UI in its own context: the plugin decorates (swaggerCSP), so a second one beside the first
  // would fail; /partner/docs/json answers the partner document instead of the whole one.
  await app.register(async (scope) => {
    await scope.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig, staticCSP: true })
  })
  await app.register(async (scope) => {
    await scope.register(fastifySwaggerUi, {
      routePrefix: '/partner/docs',
      uiConfig,
      staticCSP: true,
      transformSpecificationClone: false,
      transformSpecification: () => partnerDocument
    })
  })

  serveDocument(app, '/openapi', document)
  serveDocument(app, '/partner/openapi', partnerDocument)
}, { fastify: '5.x', name: 'docs', dependencies: ['openapi-routes'] })
