import type { JobDefinition } from '../queue.js'
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
