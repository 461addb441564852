import type { Cluster, Host } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'
import type { Handlers } from '../../openapi/handler-types.js'
import * as ami from '../../services/fleet/ami.service.js'
import * as clusters from '../../services/fleet/clusters.service.js'
import * as fleet from '../../services/fleet/fleet.service.js'
import { presentJob } from '../containers/present.js'
import { principalOf } from '../request-context.js'

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

/** A cluster with its live containers (counted here, or given by a list that counted them all at once). */
async function presentCluster (db: Parameters<typeof clusters.liveContainersIn>[0], row: Cluster, live?: number): Promise<components['schemas']['Cluster']> {
  return {
    id: row.id,
    name: row.name,
    region: row.region_code,
    status: row.status,
    instanceType: row.instance_type,
    ami: row.ami,
    minSize: row.min_size,
    maxSize: row.max_size,
    capacity: row.capacity,
    capacityProvider: row.capacity_provider,
    liveContainers: live ?? await clusters.liveContainersIn(db, row.id),
    usage: row.usage,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  }
}

export const handlers = {
  async createCluster (request, reply) {
    const { cluster, job } = await clusters.createCluster(this.db, this.clusterDeps, principalOf(request).userId, request.body)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return { cluster: await presentCluster(this.db, cluster), job: presentJob(job) }
  },

  async listClusters (request) {
    const page = await clusters.listClusters(this.db, { ...request.query, limit: request.query.limit ?? 20 })
    const live = await clusters.liveContainersByCluster(this.db, page.items.map((c) => c.id))
    return {
      items: await Promise.all(page.items.map((row) => presentCluster(this.db, row, live.get(row.id) ?? 0))),
      nextCursor: page.nextCursor
    }
  },

  async getCluster (request) {
    return presentCluster(this.db, await clusters.getCluster(this.db, request.params.clusterId))
  },

  async updateCluster (request) {
    return presentCluster(this.db, await clusters.resizeCluster(this.db, this.clusterDeps, principalOf(request).userId, request.params.clusterId, request.body))
  },

  async deleteCluster (request, reply) {
    const { cluster, job } = await clusters.deleteCluster(this.db, this.clusterDeps, principalOf(request).userId, request.params.clusterId, request.query.force ?? false)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return { cluster: await presentCluster(this.db, cluster), job: presentJob(job) }
  },

  async rollAmi (request, reply) {
    const job = await ami.rollAmi(this.db, this.rollDeps, principalOf(request).userId, request.params.region, request.body)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return presentJob(job)
  },

  async listHosts (request) {
    const page = await fleet.listHosts(this.db, { ...request.query, limit: request.query.limit ?? 20 })
    return { items: page.items.map(presentHost), nextCursor: page.nextCursor }
  },

  async getFleet () {
    return { regions: await fleet.getFleet(this.db) }
  }
} satisfies Handlers<'fleet'>
