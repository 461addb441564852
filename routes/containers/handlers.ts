import type { Handlers } from '../../openapi/handler-types.js'
import { assignContainer } from '../../services/containers/containers.assignment.js'
import { ClusterNeedsFleetWrite } from '../../services/containers/containers.errors.js'
import { stopContainer } from '../../services/containers/containers.lifecycle.js'
import * as containers from '../../services/containers/containers.service.js'
import { locateClient } from '../../services/containers/geo.js'
import { principalOf } from '../request-context.js'
import { presentContainer, presentJob } from './present.js'

export const handlers = {
  async assignContainer (request, reply) {
    const principal = principalOf(request)
    if (request.body.cluster !== undefined && !principal.scopes.includes('fleet:write')) throw new ClusterNeedsFleetWrite()
    // No region asked for: the nearest one to the client (the edge's geo headers, else its IP).
    const near = request.body.region || request.body.cluster ? null : await locateClient(request.headers, request.ip, this.config.containers.geoipLookup)
    const result = await assignContainer(this.db, this.containerDeps, principal.userId, request.headers['idempotency-key'], { ...request.body, near })
    if (result.status === 201) return reply.code(201).send(presentContainer(result.container))
    reply.code(202).header('location', `/v1/jobs/${result.job.id}`)
    return { job: presentJob(result.job), container: presentContainer(result.container) }
  },

  async listContainers (request) {
    const principal = principalOf(request)
    const page = await containers.listContainers(this.db, principal, { ...request.query, limit: request.query.limit ?? 20 })
    return { items: page.items.map((row) => presentContainer(row, principal.userId)), nextCursor: page.nextCursor }
  },

  async getContainer (request) {
    return presentContainer(await containers.getOwnContainer(this.db, principalOf(request).userId, request.params.containerId))
  },

  async updateContainer (request) {
    return presentContainer(await containers.updateContainer(this.db, principalOf(request).userId, request.params.containerId, request.body))
  },

  async stopContainer (request, reply) {
    const job = await stopContainer(this.db, this.containerDeps, principalOf(request).userId, request.params.containerId)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return presentJob(job)
  }
} satisfies Handlers<'containers'>
