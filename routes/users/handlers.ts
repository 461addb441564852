import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import * as tokens from '../../services/accounts/personal-tokens.service.js'
import { presentAdminUser, presentPersonalToken } from '../accounts/present.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async listUsers (request) {
    const { limit = 20, cursor, q, role } = request.query
    const page = await accounts.listUsers(this.db, { limit, cursor, q, role })
    return { items: page.items.map(presentAdminUser), nextCursor: page.nextCursor }
  },

  async updateUser (request) {
    const account = await accounts.updateUser(this.db, this.accountDeps, principalOf(request), request.params.userId, request.body)
    return presentAdminUser(account)
  },

  async listPersonalTokens (request) {
    const { limit = 20, cursor, user } = request.query
    const page = await tokens.listPersonalTokens(this.db, user ?? null, { limit, cursor })
    return { items: page.items.map(presentPersonalToken), nextCursor: page.nextCursor }
  },

  async revokePersonalToken (request, reply) {
    await tokens.revokePersonalToken(this.db, this.accountDeps, principalOf(request).userId, request.params.tokenId, null)
    return reply.code(204).send()
  }
} satisfies Handlers<'users'>
