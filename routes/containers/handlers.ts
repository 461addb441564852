import type { Handlers } from '../../openapi/handler-types.js'
import * as containers from '../../services/containers/containers.service.js'
import { principalOf } from '../request-context.js'
import { presentContainer, presentJob } from './present.js'

export const handlers = {
  async assignContainer (request, reply) {
    const result = await containers.assignContainer(this.db, this.containerDeps, principalOf(request).userId, request.headers['idempotency-key'], request.body)
    if (result.status === 201) return reply.code(201).send(presentContainer(result.container))
    reply.code(202).header('location', `/v1/jobs/${result.job.id}`)
    return { job: presentJob(result.job), container: presentContainer(result.container) }
  },

  async listContainers (request) {
    const page = await containers.listContainers(this.db, principalOf(request).userId, { limit: request.query.limit ?? 20, cursor: request.query.cursor })
    return { items: page.items.map(presentContainer), nextCursor: page.nextCursor }
  },

  async getContainer (request) {
    return presentContainer(await containers.getOwnContainer(this.db, principalOf(request).userId, request.params.containerId))
  },

  async updateContainer (request) {
    return presentContainer(await containers.updateContainer(this.db, principalOf(request).userId, request.params.containerId, request.body))
  },

  async stopContainer (request, reply) {
    const job = await containers.stopContainer(this.db, this.containerDeps, principalOf(request).userId, request.params.containerId)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return presentJob(job)
  }
} satisfies Handlers<'containers'>
