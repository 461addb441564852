import type { FastifyRequest } from 'fastify'
import type { RequestContext } from '../services/accounts/accounts.service.js'

/** Who sent the request, for the audit trail (the IP honours TRUST_PROXY). */
export function contextOf (request: FastifyRequest): RequestContext {
  return { ip: request.ip ?? null, userAgent: request.headers['user-agent']?.slice(0, 512) ?? null }
}

type Principal = NonNullable<FastifyRequest['principal']>

/** The signed-in user of an operation secured by a bearer token (the security hook has set it). */
export function principalOf (request: FastifyRequest): Extract<Principal, { kind: 'user' }> {
  if (request.principal?.kind !== 'user') throw new Error('principalOf: operation without a user\'s security')
  return request.principal
}

/** The partner of an operation secured by a partner API key (the security hook has set it). */
export function partnerOf (request: FastifyRequest): Extract<Principal, { kind: 'partner' }> {
  if (request.principal?.kind !== 'partner') throw new Error('partnerOf: operation without partner key security')
  return request.principal
}
