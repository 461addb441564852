import type { Handlers } from '../../openapi/handler-types.js'
import * as storage from '../../services/storage/storage.service.js'
import { principalOf } from '../request-context.js'
import { authorizePage } from './authorize-page.js'

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

  async authorizeStorageConnection (request, reply) {
    const opened = await storage.openAuthorization(this.db, this.storageDeps, request.query.ticket)
    reply.header('cache-control', 'no-store')
    if ('location' in opened) return reply.redirect(opened.location, 302)
    const { name, ...cookie } = storage.browserCookie(this.storageDeps)
    reply.setCookie(name, opened.nonce, { ...cookie, httpOnly: true, sameSite: 'lax' })
    reply.type('text/html; charset=utf-8')
    return authorizePage(opened.page)
  },

  async storageCallback (request, reply) {
    const { name, ...cookie } = storage.browserCookie(this.storageDeps)
    const { location, nonceUsed } = await storage.completeConnection(this.db, this.storageDeps, request.query, request.cookies[name])
    // The flow this browser's nonce was for is over (whatever its outcome): the browser forgets it.
    if (nonceUsed) reply.clearCookie(name, { path: cookie.path, secure: cookie.secure, httpOnly: true, sameSite: 'lax' })
    return reply.code(302).header('location', location).header('cache-control', 'no-store').send()
  }
} satisfies Handlers<'storage'>
