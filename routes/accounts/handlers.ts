import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import * as tokens from '../../services/accounts/personal-tokens.service.js'
import { principalOf } from '../request-context.js'
import { presentPersonalToken, presentSession, presentUser } from './present.js'

export const handlers = {
  async signUp (request, reply) {
    reply.code(201)
    return accounts.signUp(this.db, this.accountDeps, request.body)
  },

  async verifyEmail (request) {
    return presentUser(await accounts.verifyEmail(this.db, this.accountDeps, request.body.token))
  },

  async requestPasswordReset (request, reply) {
    reply.code(202)
    return accounts.requestPasswordReset(this.accountDeps, request.body.email)
  },

  async confirmPasswordReset (request, reply) {
    await accounts.confirmPasswordReset(this.db, this.accountDeps, request.body)
    return reply.code(204).send()
  },

  async getMe (request) {
    return presentUser(await accounts.getOwnAccount(this.db, this.accountDeps, principalOf(request).userId))
  },

  async updateMe (request) {
    return presentUser(await accounts.updateMe(this.db, this.accountDeps, principalOf(request), request.body))
  },

  async deleteMe (request, reply) {
    await accounts.deleteMe(this.db, this.accountDeps, principalOf(request))
    return reply.code(204).send()
  },

  async listMySessions (request) {
    const principal = principalOf(request)
    const sessions = await accounts.listMySessions(this.db, principal.userId)
    return { items: sessions.map((s) => presentSession(s, principal.sessionId)) }
  },

  async revokeMySession (request, reply) {
    await accounts.revokeMySession(this.db, this.accountDeps, principalOf(request).userId, request.params.sessionId)
    return reply.code(204).send()
  },

  async createPersonalToken (request, reply) {
    const { row, token } = await tokens.createPersonalToken(this.db, this.accountDeps, principalOf(request), request.body)
    reply.code(201)
    return { ...presentPersonalToken(row), lastUsedAt: null, revokedAt: null, token }
  },

  async listMyPersonalTokens (request) {
    const { limit = 20, cursor } = request.query
    const page = await tokens.listPersonalTokens(this.db, principalOf(request).userId, { limit, cursor })
    return { items: page.items.map(presentPersonalToken), nextCursor: page.nextCursor }
  },

  async revokeMyPersonalToken (request, reply) {
    const { userId } = principalOf(request)
    await tokens.revokePersonalToken(this.db, this.accountDeps, userId, request.params.tokenId, userId)
    return reply.code(204).send()
  }
} satisfies Handlers<'accounts'>
