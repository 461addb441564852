import type { Handlers } from '../../openapi/handler-types.js'
import * as catalog from '../../services/catalog/catalog.service.js'
import { principalOf } from '../request-context.js'
import { presentAdminApp, presentApp, presentRegion } from './present.js'

export const handlers = {
  async listRegions () {
    const regions = await catalog.listRegions(this.db)
    return { items: regions.map(presentRegion) }
  },

  async listApps (request) {
    const { limit = 20, cursor, region } = request.query
    const page = await catalog.listApps(this.db, { limit, cursor, region })
    return { items: page.items.map(presentApp), nextCursor: page.nextCursor }
  },

  async getApp (request) {
    return presentApp(await catalog.getApp(this.db, request.params.appId))
  },

  async updateRegion (request) {
    const region = await catalog.updateRegion(this.db, { cache: this.cache }, principalOf(request).userId, request.params.regionCode, request.body)
    return presentRegion(region)
  },

  async createApp (request, reply) {
    const app = await catalog.createApp(this.db, { cache: this.cache }, principalOf(request).userId, request.body)
    reply.code(201).header('location', `/v1/admin/apps/${app.id}`)
    return presentAdminApp(app)
  },

  async getAdminApp (request) {
    return presentAdminApp(await catalog.getAdminApp(this.db, request.params.appId))
  },

  async updateApp (request) {
    return presentAdminApp(await catalog.updateApp(this.db, { cache: this.cache }, principalOf(request).userId, request.params.appId, request.body))
  },

  async setAppRegion (request) {
    const deps = { cache: this.cache, describeTaskDefinition: this.describeTaskDefinition }
    const { appId, regionCode } = request.params
    return presentAdminApp(await catalog.setAppRegion(this.db, deps, principalOf(request).userId, appId, regionCode, request.body))
  }
} satisfies Handlers<'catalog'>
