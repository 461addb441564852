import type { Handlers } from '../../openapi/handler-types.js'
import * as hosts from '../../services/hosts/hosts.service.js'

export const handlers = {
  async hostHandshake (request, reply) {
    const { created, credentials } = await hosts.handshake(this.db, this.config.hosts, request.body, request.ip)
    return reply.code(created ? 201 : 200).send(credentials)
  },

  async hostHeartbeat (request, reply) {
    if (!request.agentHost) throw new Error('hosts: heartbeat without hostSecret')
    await hosts.heartbeat(this.db, request.agentHost, request.body)
    return reply.code(204).send()
  }
} satisfies Handlers<'hosts'>
