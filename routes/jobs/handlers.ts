import { Readable } from 'node:stream'
import type { Handlers } from '../../openapi/handler-types.js'
import { jobEvents } from '../../services/containers/containers.job-events.js'
import { cancelJob, getJob } from '../../services/containers/containers.job-status.js'
import { childrenOf } from '../../services/fleet/ami.service.js'
import { presentJob } from '../containers/present.js'
import { queueDashboard } from '../../services/queue.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async openQueueDashboard (request, reply) {
    // The bearer token this admin sent (the security hook verified it), in a cookie for the dashboard's path.
    const token = request.headers.authorization!.replace(/^Bearer\s+/i, '')
    const { exp } = this.jwt.decode<{ exp: number }>(token)!
    const maxAge = Math.max(0, exp - Math.floor(Date.now() / 1000))
    reply.header('set-cookie', `${queueDashboard.cookie}=${token}; Path=${queueDashboard.path}; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${request.protocol === 'https' ? '; Secure' : ''}`)
    return reply.code(201).send({ url: queueDashboard.path, expiresAt: new Date(exp * 1000).toISOString() })
  },

  async getJob (request) {
    const job = await getJob(this.db, principalOf(request), request.params.jobId)
    return presentJob(job, job.kind === 'roll_ami' ? await childrenOf(this.db, job.id) : undefined)
  },

  async streamJobEvents (request, reply) {
    // The event-streams plugin admitted this stream (or answered 429) and ends it when it must.
    const { signal } = request.eventStream!
    const events = jobEvents(this.db, this.jobFeed, principalOf(request), request.params.jobId, request.headers['last-event-id'], signal)
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
    return presentJob(await cancelJob(this.db, { queue: this.queue }, principalOf(request), request.params.jobId))
  }
} satisfies Handlers<'jobs'>
