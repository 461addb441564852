import type { Handlers } from '../../openapi/handler-types.js'

export const handlers = {
  async purgeCache (request, reply) {
    const body = request.body
    const tags = 'tags' in body ? body.tags : null
    if (tags) await this.cache.invalidate(tags)
    else await this.cache.invalidateAll()
    request.log.info({ tags, everything: !tags }, 'cache purged by an operator')
    return reply.code(202).send({ purger: this.cache.purger, tags: tags ?? [], everything: !tags })
  }
} satisfies Handlers<'cache'>
