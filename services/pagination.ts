import { defineError } from './errors.js'

export const InvalidCursor = defineError('bad_request', 'Invalid cursor', () => 'The cursor is not one this API returned. Start again without it.')

/**
 * The one cursor codec: a page's cursor is the sort key of its last row, its parts joined by `|`, base64url.
 * Opaque to callers; `read` checks the parts (their count and shape) and answers the key, or undefined for a
 * cursor this API never made (then InvalidCursor: 400).
 */
export function encodeCursor (parts: readonly string[]): string {
  return Buffer.from(parts.join('|')).toString('base64url')
}

export function decodeCursor<K> (cursor: string, read: (parts: string[]) => K | undefined): K {
  const key = read(Buffer.from(cursor, 'base64url').toString('utf8').split('|'))
  if (key === undefined) throw new InvalidCursor()
  return key
}

/** A newest-first keyset page's cursor: (created_at, id) of the last row. */
const uuid = /^[0-9a-f-]{36}$/

export function decodeKeyset (cursor: string): { createdAt: Date, id: string } {
  return decodeCursor(cursor, (parts) => {
    if (parts.length !== 2 || !uuid.test(parts[1]!)) return undefined
    const createdAt = new Date(parts[0]!)
    return Number.isNaN(createdAt.getTime()) ? undefined : { createdAt, id: parts[1]! }
  })
}

/**
 * One page of `rows`, read with one row more than `limit`: its presence says a next page exists, whose cursor
 * is the key of this page's last row (by default the newest-first keyset).
 */
export function pageOf<T extends { created_at: Date, id: string }> (rows: T[], limit: number): Page<T>
export function pageOf<T> (rows: T[], limit: number, keyOf: (row: T) => readonly string[]): Page<T>
export function pageOf<T> (rows: T[], limit: number, keyOf = keysetOf as (row: T) => readonly string[]): Page<T> {
  const items = rows.slice(0, limit)
  return { items, nextCursor: rows.length > limit ? encodeCursor(keyOf(items.at(-1)!)) : null }
}

export interface Page<T> { items: T[], nextCursor: string | null }

const keysetOf = (row: { created_at: Date, id: string }) => [row.created_at.toISOString(), row.id]
