import type { PGlite } from '@electric-sql/pglite'

/**
 * A pg-Pool-shaped front for PGlite, so kysely's own PostgresDialect drives it. PGlite runs one session;
 * connect() hands out that session to one caller at a time (a FIFO queue), which serialises transactions
 * instead of letting two interleave on the same session and hang.
 */
export class PGlitePool {
  #waiters: Array<() => void> = []
  #busy = false
  /** `onEnd`: after PGlite closed (the data directory's lock is released there). */
  constructor (private readonly pglite: PGlite, private readonly onEnd: () => Promise<void> = async () => {}) {}

  async connect () {
    if (this.#busy) await new Promise<void>((resolve) => this.#waiters.push(resolve))
    this.#busy = true
    let released = false
    const pglite = this.pglite
    return {
      query: async (sql: string, params: unknown[]) => {
        const result = await pglite.query<Record<string, unknown>>(sql, params)
        const command = /^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? 'SELECT'
        return { command, rowCount: result.affectedRows ?? result.rows.length, rows: result.rows }
      },
      release: () => {
        if (released) return
        released = true
        const next = this.#waiters.shift()
        if (next) next()
        else this.#busy = false
      }
    }
  }

  async end () {
    try {
      await this.pglite.close()
    } finally {
      await this.onEnd()
    }
  }
}
