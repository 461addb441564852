import type { Handlers } from '../../openapi/handler-types.js'

export const handlers = {
  async purgeCache (request, reply) {
    const body = request.body
    if (body.all) await this.cache.invalidateAll()
    else await this.cache.invalidate(body.tags ?? [])
    request.log.info({ tags: body.tags ?? null, everything: Boolean(body.all) }, 'cache purged by an operator')
    return reply.code(202).send({ purger: this.cache.purger, tags: body.all ? [] : body.tags ?? [], everything: Boolean(body.all) })
  }
} satisfies Handlers<'cache'>
