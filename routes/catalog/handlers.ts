import type { Handlers } from '../../openapi/handler-types.js'
import * as catalog from '../../services/catalog/catalog.service.js'
import { presentApp, presentRegion } from './present.js'

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
    const region = await catalog.updateRegion(this.db, { cache: this.cache }, request.params.regionCode, request.body)
    return presentRegion(region)
  }
} satisfies Handlers<'catalog'>
