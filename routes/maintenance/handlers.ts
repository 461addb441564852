import type { Handlers } from '../../openapi/handler-types.js'
import * as maintenance from '../../services/maintenance/maintenance.service.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async setMaintenance (request) {
    const result = await maintenance.setMaintenance(this.db, { cache: this.cache }, principalOf(request).userId, request.body)
    return {
      windows: result.windows.map((w) => ({ scope: w.scope, message: w.message, startsAt: w.starts_at.toISOString(), endsAt: w.ends_at.toISOString() })),
      runningJobs: result.runningJobs
    }
  },

  async getStatus () {
    return maintenance.getStatus(this.db)
  }
} satisfies Handlers<'maintenance'>
