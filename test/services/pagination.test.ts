// The one cursor codec (services/pagination.ts): every list's cursor is made and read by it.
import t from 'tap'
import { decodeCursor, decodeKeyset, encodeCursor, InvalidCursor, pageOf } from '../../services/pagination.js'

const b64 = (text: string) => Buffer.from(text).toString('base64url')

t.test('pagination › cursor › the wire format is the one the three codecs made before (old cursors still work)', async (t) => {
  const at = new Date('2026-11-27T13:00:00.123Z')
  const id = '0b7c9c3e-1a2b-4c5d-8e9f-001122334455'
  t.equal(encodeCursor([at.toISOString(), id]), b64(`${at.toISOString()}|${id}`), 'keyset: created_at|id')
  t.equal(encodeCursor(['chrome']), b64('chrome'), 'catalog: the app id')
  t.equal(encodeCursor(['42']), b64('42'), 'audit: the event id')
  t.same(decodeKeyset(b64(`${at.toISOString()}|${id}`)), { createdAt: at, id })
})

t.test('pagination › cursor › a cursor this API did not make is InvalidCursor (400), whatever it holds', async (t) => {
  const one = (parts: string[]) => parts.length === 1 && /^[0-9]+$/.test(parts[0]!) ? parts[0] : undefined
  for (const bad of ['', 'not base64 at all!', b64('x'), b64('1|2'), b64('1\n2')]) {
    t.throws(() => decodeCursor(bad, one), InvalidCursor, JSON.stringify(bad))
  }
  for (const bad of [b64('2026-11-27T13:00:00Z'), b64('yesterday|0b7c9c3e-1a2b-4c5d-8e9f-001122334455'), b64('2026-11-27T13:00:00Z|1'), b64('2026-11-27T13:00:00Z|a|b')]) {
    t.throws(() => decodeKeyset(bad), { code: 'bad_request' }, JSON.stringify(Buffer.from(bad, 'base64url').toString()))
  }
})

t.test('pagination › pageOf › one row more than the limit gives the last item\'s key as the next cursor', async (t) => {
  const rows = [{ id: 'a' }, { id: 'b' }, { id: 'c' }]
  t.same(pageOf(rows, 2, (r) => [r.id]), { items: rows.slice(0, 2), nextCursor: b64('b') })
  t.same(pageOf(rows, 3, (r) => [r.id]), { items: rows, nextCursor: null }, 'the last page')
  const dated = [{ id: '0b7c9c3e-1a2b-4c5d-8e9f-001122334455', created_at: new Date(0) }, { id: 'x', created_at: new Date(1) }]
  t.equal(pageOf(dated, 1).nextCursor, b64(`${new Date(0).toISOString()}|${dated[0]!.id}`), 'newest-first keyset by default')
})
