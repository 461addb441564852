import fp from 'fastify-plugin'
import type { Job } from '../db/types.js'
import type { JobFeed } from '../services/containers/containers.job-events.js'
import { jobsByIds } from '../services/containers/containers.job-status.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** Job changes for the event streams of this process (one watch per stream). */
    jobFeed: JobFeed
  }
}

interface Watch { listeners: Set<(job: Job) => void>, reading: boolean, again: boolean }

const topic = 'jobs:changed'

/**
 * Pushes job changes to the event streams: the db plugin tells of every committed update of a job row, in
 * whichever process made it (a worker's progress, a cancel here); this process hears its own at once and
 * the others' over the broadcast plugin (`jobs:changed`, the ids), one subscription for all its streams.
 * A job some stream here watches is then read once for all of them, never per stream. Every `resyncMs` the
 * watched jobs are read again in one query anyway: a message lost while Redis reconnected (the broadcast
 * plugin also asks for a reload when it is back) costs at most that delay.
 */
export default fp(async function jobFeedPlugin (app) {
  const watches = new Map<string, Watch>()

  function reread (ids: Iterable<string>) {
    const batch = new Map<string, Watch>()
    for (const id of ids) {
      const watch = watches.get(id)
      if (!watch) continue
      // A read already running may have started before this change was committed: one more after it.
      if (watch.reading) watch.again = true
      else {
        watch.reading = true
        batch.set(id, watch)
      }
    }
    if (batch.size === 0) return
    jobsByIds(app.db, [...batch.keys()]).then((jobs) => {
      for (const job of jobs) for (const listener of batch.get(job.id)!.listeners) listener(job)
    }, (err: unknown) => app.log.warn({ err }, 'job feed: changed jobs not read'))
      .finally(() => {
        const again: string[] = []
        for (const [id, watch] of batch) {
          watch.reading = false
          if (watch.again) {
            watch.again = false
            again.push(id)
          }
        }
        if (again.length > 0) reread(again)
      })
  }

  const heard = (ids: unknown) => {
    if (ids === null) reread(watches.keys())
    else if (Array.isArray(ids)) reread(ids.filter((id): id is string => typeof id === 'string'))
  }
  await app.broadcast.subscribe(topic, heard)
  app.broadcast.onReconnect(async () => { reread(watches.keys()) })
  app.dbWrites.on('job', (ids) => {
    heard(ids)
    app.broadcast.publish(topic, ids).catch(() => {})
  })

  const resync = setInterval(() => { reread(watches.keys()) }, app.config.eventStreams.resyncMs)
  resync.unref()
  app.addHook('onClose', async () => { clearInterval(resync) })

  app.decorate('jobFeed', {
    watch (id, listener) {
      let watch = watches.get(id)
      if (!watch) {
        watch = { listeners: new Set(), reading: false, again: false }
        watches.set(id, watch)
      }
      const mine = watch
      mine.listeners.add(listener)
      return () => {
        mine.listeners.delete(listener)
        if (mine.listeners.size === 0 && watches.get(id) === mine) watches.delete(id)
      }
    },
    refresh (id) { reread([id]) }
  } satisfies JobFeed)
}, { fastify: '5.x', name: 'job-feed', dependencies: ['config', 'db', 'broadcast'] })
