/** What a service calls after a committed change, so no cache (origin, other processes, edge) serves the old data. */
export interface CacheInvalidator {
  invalidate (tags: readonly string[]): Promise<void>
}
