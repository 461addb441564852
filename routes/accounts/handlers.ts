import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import { principalOf } from '../request-context.js'
import { presentSession, presentUser } from './present.js'

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
  }
} satisfies Handlers<'accounts'>
