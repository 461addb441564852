import type { Handlers } from '../../openapi/handler-types.js'

export const handlers = {
  // Hasura forwards the client's headers. No valid token is not an error here: it is the anonymous role.
  async hasuraAuth (request) {
    const claims = await this.verifyBearer(request.headers.authorization)
    if (!claims) return { 'X-Hasura-Role': 'anonymous' as const }
    return { 'X-Hasura-Role': claims.role, 'X-Hasura-User-Id': claims.sub }
  }
} satisfies Handlers<'hasura'>
