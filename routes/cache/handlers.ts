import type { Handlers } from '../../openapi/handler-types.js'
import { recordAudit } from '../../services/audit/audit.service.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async purgeCache (request, reply) {
    const body = request.body
    const tags = 'tags' in body ? body.tags : null
    if (tags) await this.cache.invalidate(tags)
    else await this.cache.invalidateAll()
    await recordAudit(this.db, { action: 'cache.purged', actorId: principalOf(request).userId, target: { type: 'cache', id: tags ? 'tags' : 'all' }, details: { tags, everything: !tags } })
    return reply.code(202).send({ purger: this.cache.purger, tags: tags ?? [], everything: !tags })
  }
} satisfies Handlers<'cache'>
