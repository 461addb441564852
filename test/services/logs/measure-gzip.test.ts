import { gzipSync } from 'node:zlib'
import t from 'tap'
import { DomainError } from '../../../services/errors.js'
import { measureGzip } from '../../../services/logs/logs.service.js'

// What the upload path's inflater does with a bomb: it counts its output chunk by chunk and stops once past
// the cap, so it inflates about the cap (plus one 16 KiB zlib chunk) and reads only the compressed bytes
// that took, not the rest of the body.
const cap = 64 * 1024
const chunk = 16 * 1024

t.test('logs › measureGzip › a bomb stops near the cap: output within one chunk of it, most of the body never read', async (t) => {
  for (const [what, size] of [['1 MiB of zeros', 1024 * 1024], ['64 MiB of zeros', 64 * 1024 * 1024]] as const) {
    const bomb = gzipSync(Buffer.alloc(size), { level: 9 })
    const measure = await measureGzip(bomb, cap)
    t.equal(measure.overCap, true, `${what} (${bomb.length} bytes) is over the cap`)
    t.ok(measure.inflated > cap && measure.inflated <= cap + chunk, `${what}: ${measure.inflated} bytes inflated, not ${size}`)
    t.ok(measure.consumed < bomb.length / 4, `${what}: ${measure.consumed} of ${bomb.length} compressed bytes read`)
  }
})

t.test('logs › measureGzip › a body under the cap is inflated whole and counted exactly, across gzip members', async (t) => {
  const one = Buffer.from('line\n'.repeat(1000))
  const two = Buffer.from('another member\n'.repeat(100))
  const body = Buffer.concat([gzipSync(one), gzipSync(two)])
  t.same(await measureGzip(body, cap), { inflated: one.length + two.length, consumed: body.length, overCap: false })
  t.equal((await measureGzip(gzipSync(Buffer.alloc(cap)), cap)).overCap, false, 'the cap itself is allowed')
  t.equal((await measureGzip(gzipSync(Buffer.alloc(cap + 1)), cap)).overCap, true, 'one byte more is not')
})

t.test('logs › measureGzip › a stream that is not gzip, cut short or corrupt is NotGzip (validation_failed on /body), never another error', async (t) => {
  const whole = gzipSync(Buffer.from('x'.repeat(5000)))
  const corrupt = Buffer.from(whole)
  corrupt.fill(0, 10, 20)
  for (const [what, body] of [['text', Buffer.from('not gzip at all, just some text')], ['cut short', whole.subarray(0, whole.length - 4)], ['corrupt', corrupt], ['empty', Buffer.alloc(0)]] as const) {
    const err = await measureGzip(body, cap).then(() => null, (e: unknown) => e)
    t.ok(err instanceof DomainError, what)
    t.match(err, { code: 'validation_failed', extra: { errors: [{ field: '/body' }] } }, what)
  }
})
