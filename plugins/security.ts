import fastifyCors from '@fastify/cors'
import fp from 'fastify-plugin'
import helmet from 'helmet'
import type { IncomingMessage, ServerResponse } from 'node:http'

// Security headers for a JSON API (OWASP REST cheat sheet): nothing may frame or run our answers.
// /docs replaces the CSP with Swagger UI's own.
const helmetOptions = {
  contentSecurityPolicy: { useDefaults: false, directives: { defaultSrc: ["'none'"], frameAncestors: ["'none'"] } },
  crossOriginOpenerPolicy: false,
  crossOriginResourcePolicy: false,
  originAgentCluster: false,
  referrerPolicy: { policy: 'no-referrer' as const },
  strictTransportSecurity: { maxAge: 31536000, includeSubDomains: true },
  xDnsPrefetchControl: false,
  xDownloadOptions: false,
  xFrameOptions: { action: 'deny' as const },
  xPermittedCrossDomainPolicies: false,
  xXssProtection: false
}

/** The headers helmet would set, computed once: @fastify/helmet rebuilds the middleware on every request. */
function helmetHeaders (): Record<string, string> {
  const headers: Record<string, string> = {}
  const res = { setHeader: (name: string, value: string) => { headers[name.toLowerCase()] = value }, removeHeader: () => {} }
  helmet(helmetOptions)({} as IncomingMessage, res as unknown as ServerResponse, () => {})
  return headers
}

/**
 * The security headers of every answer. Exported for Fastify's own refusals before routing (frameworkErrors:
 * a malformed URL, a path too long), which no hook sees.
 */
export const securityHeaders: Readonly<Record<string, string>> = Object.freeze(helmetHeaders())

/** Helmet's security headers, and CORS for the configured origins only (none by default). */
export default fp(async function securityPlugin (app) {
  const headers = securityHeaders
  app.addHook('onRequest', (_request, reply, done) => {
    reply.headers(headers)
    done()
  })
  // An answer sent before its request's body arrived (a 429, a 401, a 415 on the headers alone) closes the
  // connection: otherwise Node keeps the socket for the rest of that body, and a client that never sends it
  // holds the connection for the keep-alive timeout (slowloris on the cheapest routes).
  // A request without a body has nothing outstanding: Node marks it complete only after its 'request' event,
  // so an answer sent in the same tick (a cached read answered from onRequest) would close a keep-alive
  // connection for nothing.
  app.addHook('onSend', (request, reply, payload, done) => {
    const raw = request.raw
    if (raw.complete === false && (raw.headers['transfer-encoding'] !== undefined || (raw.headers['content-length'] ?? '0') !== '0')) reply.header('connection', 'close')
    done(null, payload)
  })

  // A function rather than the list: with a list, @fastify/cors leaves out only Access-Control-Allow-Origin
  // for a refused origin and still sends it the credentials, methods and exposed headers; refused here, it
  // gets no CORS header at all (and its preflight is a 404). Either way it adds `Vary: Origin`.
  const origins = new Set(app.config.http.corsOrigins)
  await app.register(fastifyCors, {
    origin: origins.size > 0 ? (origin, callback) => { callback(null, origin !== undefined && origins.has(origin) ? origin : false) } : false,
    credentials: true,
    // @fastify/cors allows only the CORS-safelisted methods by default: the web app's PATCH and DELETE need saying.
    methods: ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'],
    exposedHeaders: ['Location', 'Retry-After', 'X-Request-Id', 'ETag', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'],
    maxAge: 600
  })
}, { fastify: '5.x', name: 'security', dependencies: ['config'] })
