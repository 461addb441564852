import { Readable } from 'node:stream'
import type { FastifyInstance } from 'fastify'
import type { Handlers } from '../../openapi/handler-types.js'
import type { Container } from '../../db/types.js'
import { assignContainer } from '../../services/containers/containers.assignment.js'
import { ClusterNeedsFleetWrite } from '../../services/containers/containers.errors.js'
import { containerEvents } from '../../services/containers/containers.events.js'
import { createGrant, liveGrant, revokeGrant, revokeGrants } from '../../services/containers/containers.grants.js'
import { stopContainer } from '../../services/containers/containers.lifecycle.js'
import * as containers from '../../services/containers/containers.service.js'
import { extendSession } from '../../services/containers/containers.sessions.js'
import { locateClient } from '../../services/containers/geo.js'
import { principalOf } from '../request-context.js'
import { presentContainer, presentContainerEvent, presentGrant, presentJob } from './present.js'

/** Whether the owner's view carries the connection details: grants not required, or a live grant of it sent along. */
async function reveals (app: FastifyInstance, container: Container, grant?: string): Promise<boolean> {
  if (!app.config.containers.grants.required) return true
  if (!grant) return false
  const live = await liveGrant(app.db, app.grantDeps, grant)
  return live?.container.id === container.id
}

export const handlers = {
  async assignContainer (request, reply) {
    const principal = principalOf(request)
    if (request.body.cluster !== undefined && !principal.scopes.includes('fleet:write')) throw new ClusterNeedsFleetWrite()
    // No region asked for: the nearest one to the client (the edge's geo headers, else its IP).
    const near = request.body.region || request.body.cluster ? null : await locateClient(request.headers, request.ip, this.config.containers.geoipLookup)
    const result = await assignContainer(this.db, this.containerDeps, principal.userId, request.headers['idempotency-key'], { ...request.body, near })
    const reveal = await reveals(this, result.container)
    if (result.status === 201) return reply.code(201).send(presentContainer(result.container, { reveal }))
    reply.code(202).header('location', `/v1/jobs/${result.job.id}`)
    return { job: presentJob(result.job), container: presentContainer(result.container, { reveal }) }
  },

  async listContainers (request) {
    const principal = principalOf(request)
    const page = await containers.listContainers(this.db, principal, { ...request.query, limit: request.query.limit ?? 20 })
    const reveal = !this.config.containers.grants.required
    return { items: page.items.map((row) => presentContainer(row, { viewer: principal.userId, reveal })), nextCursor: page.nextCursor }
  },

  async getContainer (request) {
    const container = await containers.getOwnContainer(this.db, principalOf(request).userId, request.params.containerId)
    return presentContainer(container, { reveal: await reveals(this, container, request.headers['x-connection-grant']) })
  },

  async updateContainer (request) {
    const container = await containers.updateContainer(this.db, principalOf(request).userId, request.params.containerId, request.body)
    return presentContainer(container, { reveal: await reveals(this, container) })
  },

  async stopContainer (request, reply) {
    const job = await stopContainer(this.db, this.containerDeps, principalOf(request).userId, request.params.containerId)
    reply.code(202).header('location', `/v1/jobs/${job.id}`)
    return presentJob(job)
  },

  async extendContainerSession (request) {
    const container = await extendSession(this.db, this.config.containers.sessions, principalOf(request).userId, request.params.containerId, new Date(request.body.until))
    return presentContainer(container, { reveal: await reveals(this, container) })
  },

  async streamContainerEvents (request, reply) {
    // The event-streams plugin admitted this stream (or answered 429) and ends it when it must.
    const { signal } = request.eventStream!
    const events = containerEvents(this.db, this.containerFeed, principalOf(request).userId, request.params.containerId, request.headers['last-event-id'], signal)
    // The first read happens before answering, so a missing or foreign container is still a 404 problem.
    const first = await events.next()
    async function * sse () {
      let next = first
      while (!next.done) {
        const event = next.value
        yield event === null ? ': keep-alive\n\n' : `id: ${event.id}\nevent: ${event.kind}\ndata: ${JSON.stringify(presentContainerEvent(event))}\n\n`
        next = await events.next()
      }
    }
    reply.type('text/event-stream').header('x-accel-buffering', 'no')
    return Readable.from(sse())
  },

  async createConnectionGrant (request, reply) {
    const { containerId } = request.params
    const { grant, token, container } = await createGrant(this.db, this.grantDeps, principalOf(request).userId, containerId, request.body?.lifetimeSeconds)
    reply.code(201).header('location', `/v1/containers/${containerId}/grants/${grant.id}`)
    return presentGrant(grant, token, container)
  },

  async revokeConnectionGrants (request, reply) {
    await revokeGrants(this.db, this.clock, principalOf(request).userId, request.params.containerId)
    return reply.code(204).send()
  },

  async revokeConnectionGrant (request, reply) {
    await revokeGrant(this.db, this.clock, principalOf(request).userId, request.params.containerId, request.params.grantId)
    return reply.code(204).send()
  }
} satisfies Handlers<'containers'>
