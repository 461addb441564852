import type { Handlers } from '../../openapi/handler-types.js'
import * as partners from '../../services/partners/partners.service.js'
import { partnerOf } from '../request-context.js'
import { presentPartnerContainer, presentPartnerUsage, presentPartnerUser } from './present.js'

export const handlers = {
  async listPartnerUsers (request) {
    const { limit = 20, cursor } = request.query
    const page = await partners.listPartnerUsers(this.db, partnerOf(request).partnerId, { limit, cursor })
    return { items: page.items.map(presentPartnerUser), nextCursor: page.nextCursor }
  },

  async getPartnerUsage (request) {
    const { limit = 20, cursor, month, user } = request.query
    return presentPartnerUsage(await partners.partnerUsage(this.db, partnerOf(request).partnerId, { limit, cursor, month, user }))
  },

  async listPartnerContainers (request) {
    const { limit = 20, cursor, user } = request.query
    const page = await partners.listPartnerContainers(this.db, partnerOf(request).partnerId, { limit, cursor, user })
    return { items: page.items.map(presentPartnerContainer), nextCursor: page.nextCursor }
  }
} satisfies Handlers<'partner'>
