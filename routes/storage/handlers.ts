import type { Handlers } from '../../openapi/handler-types.js'
import * as storage from '../../services/storage/storage.service.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async listStorageProviders () {
    return { items: this.storageDeps.providers.map((p) => ({ code: p.code, name: p.name, iconUrl: p.iconUrl, termsUrl: p.termsUrl })) }
  },

  async startStorageConnection (request, reply) {
    reply.code(201)
    return storage.startConnection(this.storageDeps, principalOf(request).userId, request.body.provider)
  },

  async listStorageConnections (request) {
    const rows = await storage.listConnections(this.db, principalOf(request).userId)
    return { items: rows.map((r) => ({ provider: r.provider, accountEmail: r.account_email, connectedAt: r.connected_at.toISOString(), status: r.status })) }
  },

  async deleteStorageConnection (request, reply) {
    await storage.deleteConnection(this.db, this.storageDeps, principalOf(request).userId, request.params.provider)
    return reply.code(204).send()
  },

  async storageCallback (request, reply) {
    const location = await storage.completeConnection(this.db, this.storageDeps, request.query)
    return reply.code(302).header('location', location).header('cache-control', 'no-store').send()
  }
} satisfies Handlers<'storage'>
