import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import fastifySwagger from '@fastify/swagger'
import fastifySwaggerUi from '@fastify/swagger-ui'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { stringify } from 'yaml'
import { addVary, etagOf } from './edge-cache.js'

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

/**
 * Sends `body` edge-cached like the public reads, with a strong ETag (304 on If-None-Match); a deploy brings
 * new bytes (purge tag `openapi`). `immutable` for a URL that names its content's version.
 */
function sendCached (request: FastifyRequest, reply: FastifyReply, body: string, type: string, etag: string, immutable = false) {
  if (immutable) {
    reply.header('cache-control', 'public, max-age=31536000, immutable').header('cdn-cache-control', 'max-age=31536000')
      .header('surrogate-control', 'max-age=31536000')
  } else {
    reply.header('cache-control', 'public, max-age=300, s-maxage=3600, stale-while-revalidate=300, stale-if-error=86400')
      .header('cdn-cache-control', 'max-age=3600').header('surrogate-control', 'max-age=3600')
  }
  reply.header('etag', etag).header('surrogate-key', 'openapi').header('xkey', 'openapi')
  addVary(reply, ['Accept-Encoding'])
  if (request.headers['if-none-match'] === etag) return reply.code(304).send()
  return reply.type(type).send(body)
}

/** A document served as written at `url` (.json and .yaml), serialised once, with a strong ETag; edge-cached. */
function serveDocument (app: FastifyInstance, base: string, document: Document) {
  // Each serialised on its first request and kept (YAML takes longer than the rest of start-up's docs work).
  const formats = { json: { type: 'application/json', serialise: JSON.stringify }, yaml: { type: 'application/yaml', serialise: stringify } }
  for (const [ext, { type, serialise }] of Object.entries(formats)) {
    let served: { body: string, etag: string } | undefined
    app.get(`${base}.${ext}`, { schema: { hide: true } }, async (request, reply) => {
      if (!served) {
        const body = serialise(document)
        served = { body, etag: etagOf(body) }
      }
      return sendCached(request, reply, served.body, type, served.etag)
    })
  }
}

// Swagger UI's own policy (@fastify/swagger-ui's staticCSP: true) refuses the inline styles its response
// highlighter applies (a console error on every "Try it out") and allows fonts, styles and images from any
// https: host, which it never loads. This one: everything from this origin, inline styles, data: images.
export const swaggerUiCSP = [
  "default-src 'self'", "base-uri 'self'", "connect-src 'self'", "font-src 'self' data:", "form-action 'self'",
  "frame-ancestors 'none'", "img-src 'self' data:", "object-src 'none'", "script-src 'self'", "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'"
].join('; ')

// What the reference page needs, and nothing more: its script and the document from this origin, the
// inline styles styled-components writes, data: images (Redoc's icons), and its search index in a blob: worker.
export const referenceCSP = [
  "default-src 'none'", "base-uri 'none'", "connect-src 'self'", "font-src 'self' data:", "form-action 'none'",
  "frame-ancestors 'none'", "img-src 'self' data:", "object-src 'none'", "script-src 'self'", "script-src-attr 'none'",
  "style-src 'self' 'unsafe-inline'", 'worker-src blob:'
].join('; ')

let redocBundle: { version: string, bundle: string, etag: string } | undefined
/** Redoc's standalone bundle, read once per process (1 MB; every app built in this process serves it). */
function redoc () {
  if (redocBundle) return redocBundle
  const require = createRequire(import.meta.url)
  const version = (require('redoc/package.json') as { version: string }).version
  // The sidebar's "API docs by Redocly" shows a logo from Redocly's CDN: a transparent pixel instead, so
  // the page loads nothing from elsewhere.
  const bundle = readFileSync(require.resolve('redoc/bundles/redoc.standalone.js'), 'utf8')
    .replaceAll('https://cdn.redoc.ly/redoc/logo-mini.svg', 'data:image/gif;base64,R0lGODlhAQABAAAAACH5BAEKAAEALAAAAAABAAEAAAICTAEAOw==')
  redocBundle = { version, bundle, etag: etagOf(bundle) }
  return redocBundle
}

/**
 * The static reference for third parties at /reference: Redoc's standalone bundle (from node_modules, served
 * by us under a versioned, immutable URL: no CDN) rendering /openapi.json, on a page without inline script.
 */
function serveReference (app: FastifyInstance, title: string) {
  const { version, bundle, etag: bundleEtag } = redoc()
  const script = `/reference/redoc-${version}.standalone.js`
  const escape = (text: string) => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`)
  const html = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escape(title)}</title>
<link rel="icon" href="data:,">
<style>body { margin: 0; padding: 0; }</style>
</head>
<body>
<redoc spec-url="/openapi.json" expand-responses="200,201,202" required-props-first="true"></redoc>
<noscript>The reference needs JavaScript; the document itself is at <a href="/openapi.json">/openapi.json</a> and <a href="/openapi.yaml">/openapi.yaml</a>.</noscript>
<script src="${script}"></script>
</body>
</html>
`
  const pageEtag = etagOf(html)
  app.get('/reference', { schema: { hide: true } }, async (request, reply) => {
    reply.header('content-security-policy', referenceCSP)
    return sendCached(request, reply, html, 'text/html; charset=utf-8', pageEtag)
  })
  app.get(script, { schema: { hide: true } }, async (request, reply) =>
    sendCached(request, reply, bundle, 'text/javascript; charset=utf-8', bundleEtag, true))
}

/**
 * The contract, served as written: /openapi.json and /openapi.yaml (serialised once at start-up, with a
 * strong ETag), Swagger UI at /docs where "Authorize" persists the bearer token across reloads, and the
 * static reference for third parties at /reference (Redoc). The partner subset (operations tagged
 * `partner`) is its own document, /partner/openapi.json and .yaml, with its own Swagger UI at
 * /partner/docs: partners see only what they can call.
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
    await scope.register(fastifySwaggerUi, { routePrefix: '/docs', uiConfig, staticCSP: swaggerUiCSP })
  })
  await app.register(async (scope) => {
    await scope.register(fastifySwaggerUi, {
      routePrefix: '/partner/docs',
      uiConfig,
      staticCSP: swaggerUiCSP,
      transformSpecificationClone: false,
      transformSpecification: () => partnerDocument
    })
  })

  serveDocument(app, '/openapi', document)
  serveDocument(app, '/partner/openapi', partnerDocument)
  serveReference(app, `${document.info?.title ?? 'API'} reference`)
}, { fastify: '5.x', name: 'docs', dependencies: ['openapi-routes'] })
