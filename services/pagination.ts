import { defineError } from './errors.js'

export const InvalidCursor = defineError('bad_request', 'Invalid cursor', () => 'The cursor is not one this API returned. Start again without it.')

/** Opaque cursor of a newest-first keyset page: the (created_at, id) of the last row. */
export function encodeKeyset (row: { created_at: Date, id: string }): string {
  return Buffer.from(`${row.created_at.toISOString()}|${row.id}`).toString('base64url')
}

export function decodeKeyset (cursor: string): { createdAt: Date, id: string } {
  const [at, id] = Buffer.from(cursor, 'base64url').toString('utf8').split('|')
  const createdAt = new Date(at ?? '')
  if (!id || !/^[0-9a-f-]{36}$/.test(id) || Number.isNaN(createdAt.getTime())) throw new InvalidCursor()
  return { createdAt, id }
}

/** Asks for one row more than the page: its presence says a next page exists. */
export function pageOf<T extends { created_at: Date, id: string }> (rows: T[], limit: number) {
  const items = rows.slice(0, limit)
  return { items, nextCursor: rows.length > limit ? encodeKeyset(items.at(-1)!) : null }
}
