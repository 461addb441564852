/** What a service calls after a committed change, so no cache (origin, other processes, edge) serves the old data. */
export interface CacheInvalidator {
  invalidate (tags: readonly string[]): Promise<void>
  /** Everything: an operator's purge of the whole edge. */
  invalidateAll (): Promise<void>
  /** Where the edge purges go (CACHE_PURGER). */
  readonly purger: 'none' | 'varnish' | 'fastly' | 'cloudflare'
}
