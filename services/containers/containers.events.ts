// A container's events as server-sent events (GET /v1/containers/{id}/events): its container_event rows in
// order (state changes, session warnings, extensions and ends), woken by the container feed.
import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { ContainerNotFound } from './containers.errors.js'

/** Where a process hears that a container may have changed, whichever process changed it. */
export interface ContainerFeed {
  /** Calls `listener` each time the container may have changed; returns the stop. */
  watch (id: string, listener: () => void): () => void
}

export interface ContainerEventRow {
  id: string
  kind: 'state' | 'session_warning' | 'session_extended' | 'session_ended'
  from_state: string | null
  to_state: string
  reason: string | null
  ends_at: Date | null
  at: Date
}

const ended = new Set(['stopped', 'failed'])

/**
 * The container's events newer than `lastEventId`, each once and in order (ids increase), then the end once
 * it is stopped or failed and every event was sent. `null` is a keep-alive after `keepAliveMs` of quiet. The
 * feed is watched before the first read, so a change committed in between is not missed. Stops when
 * `signal` aborts. Another user's container is not found (the first `next()` throws).
 */
export async function * containerEvents (db: Kysely<DB>, feed: ContainerFeed, userId: string, id: string, lastEventId: string | undefined, signal: AbortSignal, options = { keepAliveMs: 15_000 }): AsyncGenerator<ContainerEventRow | null> {
  let changed = true
  let wake: (() => void) | undefined
  const stop = feed.watch(id, () => {
    changed = true
    wake?.()
  })
  const onAbort = () => wake?.()
  signal.addEventListener('abort', onAbort)
  try {
    const owner = await db.selectFrom('container').select('user_id').where('id', '=', id).executeTakeFirst()
    if (!owner || owner.user_id !== userId) throw new ContainerNotFound(id)
    let last = lastEventId ?? '0'
    let quietSince = Date.now()
    while (!signal.aborted) {
      if (changed) {
        changed = false
        const { state } = await db.selectFrom('container').select('state').where('id', '=', id).executeTakeFirstOrThrow()
        const rows = await db.selectFrom('container_event')
          .select(['id', 'kind', 'from_state', 'to_state', 'reason', 'ends_at', 'at'])
          .where('container_id', '=', id).where('id', '>', last).orderBy('id').limit(100).execute() as ContainerEventRow[]
        for (const row of rows) {
          last = String(row.id)
          quietSince = Date.now()
          yield row
        }
        // More than a page: read on at once. Ended, and its last events sent (read after the state): done.
        if (rows.length === 100) { changed = true; continue }
        if (ended.has(state)) return
      }
      if (Date.now() - quietSince >= options.keepAliveMs) {
        quietSince = Date.now()
        yield null
      }
      if (changed || signal.aborted) continue
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        wake = resolve
        timer = setTimeout(resolve, Math.max(0, options.keepAliveMs - (Date.now() - quietSince)))
      })
      clearTimeout(timer)
      wake = undefined
    }
  } finally {
    stop()
    signal.removeEventListener('abort', onAbort)
  }
}
