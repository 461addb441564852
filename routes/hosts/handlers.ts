import type { Handlers } from '../../openapi/handler-types.js'
import { introspectGrant } from '../../services/containers/containers.grants.js'
import * as hosts from '../../services/hosts/hosts.service.js'

export const handlers = {
  async hostHandshake (request, reply) {
    const { created, credentials } = await hosts.handshake(this.db, this.hostSettings, request.body, {
      remoteIp: request.ip, currentSecret: request.headers['x-host-secret'], now: this.clock.now()
    })
    return reply.code(created ? 201 : 200).send(credentials)
  },

  async hostHeartbeat (request, reply) {
    await hosts.heartbeat(this.db, request.params.hostId, request.hostSecret ?? undefined, request.body, this.heartbeats)
    return reply.code(204).send()
  },

  async introspectConnectionGrant (request) {
    // The containers feature's grants (its contract): the same verification as the owner's views.
    return introspectGrant(this.db, this.grantDeps, request.params.hostId, request.body.token)
  }
} satisfies Handlers<'hosts'>
