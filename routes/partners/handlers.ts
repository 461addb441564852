import type { Handlers } from '../../openapi/handler-types.js'
import * as partners from '../../services/partners/partners.service.js'
import { principalOf } from '../request-context.js'
import { presentPartner, presentPartnerKey } from './present.js'

export const handlers = {
  async createPartner (request, reply) {
    reply.code(201)
    return presentPartner(await partners.createPartner(this.db, principalOf(request).userId, request.body))
  },

  async listPartners (request) {
    const { limit = 20, cursor } = request.query
    const page = await partners.listPartners(this.db, { limit, cursor })
    return { items: page.items.map(presentPartner), nextCursor: page.nextCursor }
  },

  async createPartnerKey (request, reply) {
    const { row, key } = await partners.createPartnerKey(this.db, principalOf(request).userId, request.params.partnerId, request.body)
    reply.code(201)
    return { ...presentPartnerKey(row), lastUsedAt: null, revokedAt: null, key }
  },

  async listPartnerKeys (request) {
    const { limit = 20, cursor } = request.query
    const page = await partners.listPartnerKeys(this.db, request.params.partnerId, { limit, cursor })
    return { items: page.items.map(presentPartnerKey), nextCursor: page.nextCursor }
  },

  async revokePartnerKey (request, reply) {
    await partners.revokePartnerKey(this.db, principalOf(request).userId, request.params.partnerId, request.params.keyId)
    return reply.code(204).send()
  }
} satisfies Handlers<'partners'>
