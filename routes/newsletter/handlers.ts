import type { Handlers } from '../../openapi/handler-types.js'
import * as newsletter from '../../services/accounts/newsletter.js'

export const handlers = {
  async subscribeNewsletter (request, reply) {
    reply.code(202)
    return newsletter.subscribe(this.db, this.newsletterDeps, request.body.email)
  },

  async confirmNewsletter (request) {
    return newsletter.confirm(this.db, request.body.token)
  },

  async unsubscribeNewsletter (request) {
    return newsletter.unsubscribe(this.db, this.newsletterDeps, request.query.token)
  }
} satisfies Handlers<'newsletter'>
