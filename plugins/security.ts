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

/** Helmet's security headers, and CORS for the configured origins only (none by default). */
export default fp(async function securityPlugin (app) {
  const headers = helmetHeaders()
  app.addHook('onRequest', async (_request, reply) => { reply.headers(headers) })

  const origins = app.config.http.corsOrigins
  await app.register(fastifyCors, {
    origin: origins.length > 0 ? [...origins] : false,
    credentials: true,
    exposedHeaders: ['Location', 'Retry-After', 'X-Request-Id', 'ETag', 'RateLimit-Limit', 'RateLimit-Remaining', 'RateLimit-Reset'],
    maxAge: 600
  })
}, { fastify: '5.x', name: 'security', dependencies: ['config'] })
