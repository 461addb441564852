import type { JobDefinition, JobQueue } from '../queue.js'
import type { Purger } from './cache.purger.js'

export interface PurgeTagsPayload { tags: string[] }

export const purgeTagsJob = { family: 'cache-purge', name: 'purgeTags' } as const

export function createCacheJobs (deps: { purger: Purger }): JobDefinition[] {
  return [{
    ...purgeTagsJob,
    async handle (data: PurgeTagsPayload) {
      await deps.purger.purge(data.tags)
      return { purged: data.tags }
    }
  }]
}

/** Asks the edge to drop everything tagged with one of `tags`, after the change is committed. */
export async function invalidate (queue: JobQueue, tags: string[]): Promise<string> {
  return queue.enqueue<PurgeTagsPayload>(purgeTagsJob, { tags }, { retries: 5 })
}
