// Tells the edge (CDN or Varnish) to forget representations by tag. `none` only records the request.
export interface Purger {
  readonly kind: string
  purge (tags: readonly string[]): Promise<void>
}

export function createNonePurger (log: { info: (obj: object, msg: string) => void }): Purger {
  return {
    kind: 'none',
    async purge (tags) { log.info({ tags }, 'cache purge (no purger configured)') }
  }
}
