import type { FastifyRequest } from 'fastify'

type Principal = NonNullable<FastifyRequest['principal']>

/** The signed-in user of an operation secured by a bearer token (the security hook has set it). */
export function principalOf (request: FastifyRequest): Extract<Principal, { kind: 'user' }> {
  if (request.principal?.kind !== 'user') throw new Error('principalOf: operation without a user\'s security')
  return request.principal
}

/**
 * The signed-in user of an operation marked `x-session-only` (the security handler refuses personal access
 * tokens there): a session's access token, with its session id.
 */
export function sessionOf (request: FastifyRequest): Extract<Principal, { kind: 'user' }> & { sessionId: string } {
  const principal = principalOf(request)
  if (principal.sessionId === null) throw new Error('sessionOf: operation without x-session-only')
  return { ...principal, sessionId: principal.sessionId }
}

/** The partner of an operation secured by a partner API key (the security hook has set it). */
export function partnerOf (request: FastifyRequest): Extract<Principal, { kind: 'partner' }> {
  if (request.principal?.kind !== 'partner') throw new Error('partnerOf: operation without partner key security')
  return request.principal
}
