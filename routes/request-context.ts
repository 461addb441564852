import type { FastifyRequest } from 'fastify'

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
