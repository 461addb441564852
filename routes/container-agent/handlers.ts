import type { FastifyRequest } from 'fastify'
import type { Handlers } from '../../openapi/handler-types.js'
import { ping } from '../../services/containers/containers.agent.js'
import { shutdownContainer } from '../../services/containers/containers.lifecycle.js'
import { presentJob } from '../containers/present.js'

function callerOf (request: FastifyRequest) {
  if (!request.container) throw new Error('container-agent: operation without containerSecret')
  return request.container
}

export const handlers = {
  async pingContainer (request, reply) {
    const { available, idleSeconds, lastInputAt } = request.body
    await ping(this.db, this.containerDeps, callerOf(request), available, { idleSeconds, lastInputAt: lastInputAt ? new Date(lastInputAt) : undefined, now: this.clock.now() })
    return reply.code(204).send()
  },

  async shutdownContainer (request, reply) {
    reply.code(202)
    return presentJob(await shutdownContainer(this.db, this.containerDeps, callerOf(request)))
  },

  async getProtocolInfo (request) {
    const container = callerOf(request)
    return {
      containerId: container.id,
      state: container.state,
      userId: container.user_id,
      dpi: container.dpi,
      useStun: container.use_stun,
      branch: 'prod',
      autoupdate: true
    }
  }
} satisfies Handlers<'container-agent'>
