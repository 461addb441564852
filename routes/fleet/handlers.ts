import type { Host } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'
import type { Handlers } from '../../openapi/handler-types.js'
import * as fleet from '../../services/fleet/fleet.service.js'

const kb = (v: string | null) => (v === null ? null : Number(v))

function presentHost (row: Host): components['schemas']['Host'] {
  return {
    id: row.id,
    instanceId: row.instance_id,
    region: row.region_code,
    clusterId: row.cluster_id,
    ip: row.ip,
    ami: row.ami,
    instanceType: row.instance_type,
    status: row.status,
    memory: { totalKb: kb(row.memory_total_kb), freeKb: kb(row.memory_free_kb), availableKb: kb(row.memory_available_kb) },
    lastHeartbeatAt: row.last_heartbeat_at?.toISOString() ?? null,
    createdAt: row.created_at.toISOString()
  }
}

export const handlers = {
  async listHosts (request) {
    const page = await fleet.listHosts(this.db, { ...request.query, limit: request.query.limit ?? 20 })
    return { items: page.items.map(presentHost), nextCursor: page.nextCursor }
  },

  async getFleet () {
    return { regions: await fleet.getFleet(this.db) }
  }
} satisfies Handlers<'fleet'>
