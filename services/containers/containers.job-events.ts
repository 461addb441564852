// A job's changes as server-sent events, fed by the job feed (plugins/job-feed.ts).
import type { Kysely } from 'kysely'
import type { DB, Job } from '../../db/types.js'
import { getJob } from './containers.job-status.js'

export interface JobEvent { id: string, event: 'progress' | 'succeeded' | 'failed' | 'cancelled', job: Job }

/** Where a process hears that a job changed, whichever process changed it. */
export interface JobFeed {
  /**
   * Calls `listener` with the job's row each time it may have changed. Rows come from reads made one after
   * the other, each after the change it follows: the last one given is the latest. Returns the stop.
   */
  watch (id: string, listener: (job: Job) => void): () => void
  /** Reads the job again for its watchers. */
  refresh (id: string): void
}

const isTerminal = (job: Job) => job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled'
// The terminal event's id is one past its update time: a client that saw a progress event of the same
// millisecond still gets it when it resumes, and one that saw it does not get it twice.
const versionOf = (job: Job) => job.updated_at.getTime() + (isTerminal(job) ? 1 : 0)

/**
 * The job's changes as they happen: each new version once (its update time is the event id, so a client
 * resuming with Last-Event-ID gets only newer ones), then the terminal state (id: its update time + 1),
 * then the end. `null` is a keep-alive tick after `keepAliveMs` of quiet. Changes come from `feed`, not from
 * reading the row per stream; the feed is watched before the row is first read, so a change committed
 * between the two is not missed. Stops when `signal` aborts.
 */
export async function * jobEvents (db: Kysely<DB>, feed: JobFeed, principal: { userId: string, role: string }, id: string, lastEventId: string | undefined, signal: AbortSignal, options = { keepAliveMs: 15_000 }): AsyncGenerator<JobEvent | null> {
  let heard: Job | undefined
  let wake: (() => void) | undefined
  const stop = feed.watch(id, (job) => {
    heard = job
    wake?.()
  })
  const onAbort = () => wake?.()
  signal.addEventListener('abort', onAbort)
  try {
    let job = await getJob(db, principal, id)
    // A row the feed gave during that read may be older or newer than it: one more read settles it.
    if (heard) {
      heard = undefined
      feed.refresh(id)
    }
    let last = lastEventId ? Number(lastEventId) : 0
    let sent = false
    let sentAt = Date.now()
    while (!signal.aborted) {
      if (heard) job = heard
      heard = undefined
      const version = versionOf(job)
      if (isTerminal(job)) {
        // Update times are their transaction's start: an end can be stamped before a progress event this
        // stream already sent. It is sent all the same, after it. (Stamped at or before a Last-Event-ID
        // and nothing sent here: the client saw it before it reconnected.)
        if (version > last || sent) yield { id: String(Math.max(version, last + 1)), event: job.state as JobEvent['event'], job }
        return
      }
      if (version > last) {
        last = version
        sent = true
        sentAt = Date.now()
        yield { id: String(version), event: 'progress', job }
      }
      if (Date.now() - sentAt >= options.keepAliveMs) {
        sentAt = Date.now()
        yield null
      }
      // Heard while an event was being written out: no wait.
      if (heard || signal.aborted) continue
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        wake = resolve
        timer = setTimeout(resolve, options.keepAliveMs - (Date.now() - sentAt))
      })
      clearTimeout(timer)
      wake = undefined
    }
  } finally {
    stop()
    signal.removeEventListener('abort', onAbort)
  }
}
