// Issue 18, item 14: the server answered 414 and 431 (and 413 to a body sent to an operation that takes none)
// that no operation declared. Each probe goes to every operation; its answer must be a problem+json whose
// status that operation declares. The spec side of the class: test/contract/spec.test.ts.
import { connect, type AddressInfo } from 'node:net'
import t from 'tap'
import { build } from '../helpers/build.js'
import { isProblem, operations, requiredHeaders, urlOf } from '../security/spec-walk.js'

const bodyLimit = 1024
const logMaxBytes = 4096

/** One request written at once on its own connection; the status line, headers and body that came back. */
function raw (port: number, request: string): Promise<{ status: number, headers: string, body: string }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1')
    let text = ''
    socket.on('data', (d) => { text += d.toString('latin1') })
    // Node answers and closes before it has read all of an oversized request: a reset after the answer is expected.
    socket.on('error', () => {})
    socket.on('close', () => {
      const [head = '', body = ''] = text.split('\r\n\r\n', 2)
      const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(head)?.[1])
      if (!status) reject(new Error(`no answer: ${JSON.stringify(text.slice(0, 200))}`))
      else resolve({ status, headers: head, body })
    })
    socket.on('connect', () => { socket.write(request) })
  })
}

const problemOf = (status: number, headers: string, body: string) =>
  /content-type: application\/problem\+json/i.test(headers) && (() => { try { return JSON.parse(body).status === status } catch { return false } })()

t.test('issue 18 › statuses answered before an operation runs are declared by every operation they reach', async (t) => {
  const app = await build(t, { BODY_LIMIT: String(bodyLimit), LOG_MAX_BYTES: String(logMaxBytes), RATE_LIMIT_ENABLED: 'false' })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const { port } = app.server.address() as AddressInfo
  const wrong: string[] = []
  const expect = (op: typeof operations[number], probe: string, status: number, wanted: number[], problem: boolean) => {
    if (!wanted.includes(status)) wrong.push(`${op.operationId} ${probe}: ${status}, expected ${wanted.join(' or ')}`)
    if (!op.statuses.has(String(status))) wrong.push(`${op.operationId} ${probe}: ${status} is not declared`)
    if (!problem) wrong.push(`${op.operationId} ${probe}: ${status} is not a problem+json`)
  }

  for (const op of operations) {
    const url = urlOf(op)
    const headers = Object.entries({ host: 'localhost', ...requiredHeaders(op) }).map(([k, v]) => `${k}: ${v}\r\n`).join('')

    // A URL longer than Node reads (its 16 KiB header limit counts the request line): 414.
    const longUrl = `${url}${url.includes('?') ? '&' : '?'}pad=${'a'.repeat(20_000)}`
    const uri = await raw(port, `${op.method} ${longUrl} HTTP/1.1\r\n${headers}\r\n`)
    expect(op, 'with a 20 kB URL', uri.status, [414], problemOf(uri.status, uri.headers, uri.body))

    // Headers larger than that: 431, with a short URL or a long one that fits.
    for (const [what, target] of [['short', url], ['10 kB', `${url}${url.includes('?') ? '&' : '?'}pad=${'a'.repeat(10_000)}`]]) {
      const big = await raw(port, `${op.method} ${target} HTTP/1.1\r\n${headers}x-padding: ${'a'.repeat(20_000)}\r\n\r\n`)
      expect(op, `with 20 kB of headers and a ${what} URL`, big.status, [431], problemOf(big.status, big.headers, big.body))
    }

    // A path parameter longer than the router reads (maxParamLength 200): 414 from Fastify.
    if (op.params.some((p) => p.in === 'path')) {
      const values = Object.fromEntries(op.params.filter((p) => p.in === 'path').map((p) => [p.name, 'a'.repeat(201)]))
      const res = await app.inject({ method: op.method as 'GET', url: urlOf(op, values), headers: requiredHeaders(op) })
      expect(op, 'with a 201-character path parameter', res.statusCode, [414], isProblem(res))
    }

    // A body over every limit, on a method Fastify reads bodies of, whether the operation takes one or not:
    // 413 (401 first, where an operation checks its credentials before reading the body).
    if (op.method !== 'GET') {
      const type = op.body?.contents[0]?.type ?? 'application/json'
      const payload = type === 'application/json' ? JSON.stringify({ pad: 'a'.repeat(1_100_000) }) : Buffer.alloc(1_100_000, 97)
      const res = await app.inject({ method: op.method as 'POST', url, headers: { ...requiredHeaders(op), 'content-type': type }, payload })
      expect(op, `with a ${type} body over the limit`, res.statusCode, op.secured ? [413, 401] : [413], isProblem(res))
    }
  }
  t.same(wrong, [], 'every probe answered a declared problem')
})
