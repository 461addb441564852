import type { JobDefinition } from '../queue.js'
import type { Purger } from './cache.purger.js'

/** Tags to forget at the edge, or everything (`all`). */
export interface PurgeTagsPayload { tags: string[], all?: boolean }

export const purgeTagsJob = { family: 'cache-purge', name: 'purgeTags' } as const

export function createCacheJobs (deps: { purger: Purger }): JobDefinition[] {
  return [{
    ...purgeTagsJob,
    async handle (data: PurgeTagsPayload) {
      if (data.all) await deps.purger.purgeAll()
      else await deps.purger.purge(data.tags)
      return { purger: deps.purger.kind, purged: data.all ? 'everything' : data.tags }
    }
  }]
}
