import { Readable } from 'node:stream'
import type { Handlers } from '../../openapi/handler-types.js'
import * as containers from '../../services/containers/containers.service.js'
import { childrenOf } from '../../services/fleet/ami.service.js'
import { presentJob } from '../containers/present.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async getJob (request) {
    const job = await containers.getJob(this.db, principalOf(request), request.params.jobId)
    return presentJob(job, job.kind === 'roll_ami' ? await childrenOf(this.db, job.id) : undefined)
  },

  async streamJobEvents (request, reply) {
    const abort = new AbortController()
    request.raw.on('close', () => abort.abort())
    const events = containers.jobEvents(this.db, principalOf(request), request.params.jobId, request.headers['last-event-id'], abort.signal)
    // The first read happens before answering, so a missing or foreign job is still a 404 problem.
    const first = await events.next()
    async function * sse () {
      let next = first
      while (!next.done) {
        const event = next.value
        yield event === null ? ': keep-alive\n\n' : `id: ${event.id}\nevent: ${event.event}\ndata: ${JSON.stringify(presentJob(event.job))}\n\n`
        next = await events.next()
      }
    }
    reply.type('text/event-stream').header('x-accel-buffering', 'no')
    return Readable.from(sse())
  },

  async cancelJob (request) {
    return presentJob(await containers.cancelJob(this.db, this.containerDeps, principalOf(request), request.params.jobId))
  }
} satisfies Handlers<'jobs'>
