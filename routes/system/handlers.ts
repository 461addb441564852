import type { Handlers } from '../../openapi/handler-types.js'

export const handlers = {
  async getHealth () {
    return { status: 'ok' as const }
  },

  async getReadiness (request) {
    return this.readiness(await this.isOperator(request))
  },

  async getMetrics (_request, reply) {
    reply.type('text/plain; version=0.0.4; charset=utf-8')
    return this.metrics.render()
  },

  async getJwks () {
    return this.jwks
  }
} satisfies Handlers<'system'>
