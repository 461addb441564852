import type { FastifyRequest } from 'fastify'
import type { RequestContext } from '../services/accounts/accounts.service.js'

/** Who sent the request, for the audit trail (the IP honours TRUST_PROXY). */
export function contextOf (request: FastifyRequest): RequestContext {
  return { ip: request.ip ?? null, userAgent: request.headers['user-agent']?.slice(0, 512) ?? null }
}

/** The principal of a secured operation (the security hook has set it). */
export function principalOf (request: FastifyRequest) {
  if (!request.principal) throw new Error('principalOf: operation without security')
  return request.principal
}
