import type { Handlers } from '../../openapi/handler-types.js'
import { listAudit } from '../../services/audit/audit.service.js'

export const handlers = {
  async listAuditEvents (request) {
    const { limit, cursor, ...filters } = request.query
    const page = await listAudit(this.db, filters, { limit: limit ?? 20, cursor })
    return {
      items: page.items.map((e) => ({
        id: String(e.id),
        at: e.at.toISOString(),
        action: e.action,
        actorId: e.actor_id,
        targetType: e.target_type,
        targetId: e.target_id,
        ip: e.ip,
        userAgent: e.user_agent,
        details: e.details as Record<string, unknown>
      })),
      nextCursor: page.nextCursor
    }
  }
} satisfies Handlers<'audit'>
