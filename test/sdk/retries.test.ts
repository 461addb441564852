// The SDK's retries on 429/503 (Retry-After), Idempotency-Key reuse and event-stream reading, against a
// small scripted HTTP server: the answers a real proxy or an overloaded API gives, on cue.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { createFractalClient, FractalProblemError, unwrap, type JobEvent } from '../../sdk/src/index.js'
import { readServerSentEvents } from '../../sdk/src/sse.js'

type Seen = { method: string, url: string, headers: IncomingMessage['headers'], body: string }
type Script = (seen: Seen, index: number, res: ServerResponse) => void

/** A server that answers the n-th request with script(request, n, res) and keeps what it received. */
async function scripted (t: Test, script: Script) {
  const seen: Seen[] = []
  const server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (chunk: string) => { body += chunk })
    req.on('end', () => {
      const request = { method: req.method!, url: req.url!, headers: req.headers, body }
      seen.push(request)
      script(request, seen.length - 1, res)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()) }))
  return { baseUrl: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen }
}

const problem = (res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}) => {
  res.writeHead(status, { 'content-type': 'application/problem+json', ...headers })
  res.end(JSON.stringify({ type: `https://docs.fractal.co/problems/${code}`, title: code, status, code, detail: `a ${status}` }))
}
const json = (res: ServerResponse, status: number, body: object) => {
  res.writeHead(status, { 'content-type': 'application/json' })
  res.end(JSON.stringify(body))
}

const job = (state: string, progress: number) => ({ id: '7b0b2a3e-3b5f-4a4e-9d55-0d5d6c8f8f01', kind: 'start_container', state, progress, message: null, result: null, errorCode: null, createdAt: '2026-01-01T00:00:00.000Z', updatedAt: '2026-01-01T00:00:00.000Z' })
const starting = { job: job('queued', 0), container: { id: '2f7e5f43-6d0f-4b8c-a7a3-8c0e1b1f7c11', app: 'chrome', region: 'us-east-1', state: 'creating', dpi: 96, useStun: false, createdAt: '2026-01-01T00:00:00.000Z', failureReason: null, connection: null } }

t.test('sdk › retries › a 503 with Retry-After: 1 is retried after a second, with the same generated Idempotency-Key and body', async (t) => {
  const { baseUrl, seen } = await scripted(t, (_req, n, res) => n === 0 ? problem(res, 503, 'maintenance', { 'retry-after': '1' }) : json(res, 202, starting))
  const client = createFractalClient({ baseUrl, accessToken: 'token' })

  const started = Date.now()
  const { data, response } = await client.POST('/v1/containers', { body: { app: 'chrome', dpi: 144 } })

  t.equal(response.status, 202)
  t.match(data, { job: { state: 'queued' } })
  t.ok(Date.now() - started >= 950, `waited ${Date.now() - started} ms`)
  t.equal(seen.length, 2)
  t.match(seen[0]!.headers['idempotency-key'], /^[0-9a-f-]{36}$/, 'a UUID key')
  t.equal(seen[1]!.headers['idempotency-key'], seen[0]!.headers['idempotency-key'], 'the retry sends the same key')
  t.equal(seen[1]!.body, '{"app":"chrome","dpi":144}', 'and the same body')
  t.equal(seen[1]!.headers.authorization, 'Bearer token')
})

t.test('sdk › retries › the caller\'s Idempotency-Key is kept; each new call gets its own generated key', async (t) => {
  const { baseUrl, seen } = await scripted(t, (_req, _n, res) => json(res, 202, starting))
  const client = createFractalClient({ baseUrl })
  await client.POST('/v1/containers', { body: { app: 'chrome' }, params: { header: { 'Idempotency-Key': 'my-own-key-123' } } })
  await client.POST('/v1/containers', { body: { app: 'chrome' } })
  await client.POST('/v1/containers', { body: { app: 'chrome' } })
  await client.GET('/v1/regions')
  t.equal(seen[0]!.headers['idempotency-key'], 'my-own-key-123')
  t.not(seen[1]!.headers['idempotency-key'], seen[2]!.headers['idempotency-key'], 'one key per intended call')
  t.equal(seen[3]!.headers['idempotency-key'], undefined, 'operations without the header get none')
})

t.test('sdk › retries › the count is bounded: the last 429 surfaces as a FractalProblemError', async (t) => {
  const { baseUrl, seen } = await scripted(t, (_req, _n, res) => problem(res, 429, 'rate_limited', { 'retry-after': '0' }))
  const client = createFractalClient({ baseUrl, retries: 3 })
  const err = await client.GET('/v1/regions').then(unwrap).catch((e: unknown) => e)
  t.equal(seen.length, 4, 'one call and three retries')
  t.ok(err instanceof FractalProblemError)
  t.match(err, { status: 429, code: 'rate_limited', retryAfter: 0 })

  const none = createFractalClient({ baseUrl, retries: 0 })
  await none.GET('/v1/regions')
  t.equal(seen.length, 5, 'retries: 0 sends once')
})

t.test('sdk › retries › a Retry-After beyond the cap is not waited for: the 503 surfaces at once', async (t) => {
  const { baseUrl, seen } = await scripted(t, (_req, _n, res) => problem(res, 503, 'maintenance', { 'retry-after': '3600' }))
  const client = createFractalClient({ baseUrl, retries: { max: 5, maxDelayMs: 10_000 } })
  const started = Date.now()
  const err = await client.GET('/v1/regions').then(unwrap).catch((e: unknown) => e)
  t.ok(Date.now() - started < 1000)
  t.equal(seen.length, 1)
  t.match(err, { status: 503, code: 'maintenance', retryAfter: 3600 })
})

t.test('sdk › retries › an HTTP-date Retry-After is honoured; other statuses and a missing one use backoff or none', async (t) => {
  const past = new Date(Date.now() - 60_000).toUTCString()
  const { baseUrl, seen } = await scripted(t, (req, n, res) => {
    if (req.url === '/v1/regions') return n === 0 ? problem(res, 503, 'unavailable', { 'retry-after': past }) : json(res, 200, { items: [] })
    if (req.url === '/v1/apps') return problem(res, 500, 'internal')
    return n === 3 ? problem(res, 429, 'rate_limited') : json(res, 200, { items: [], nextCursor: null })
  })
  const client = createFractalClient({ baseUrl, retries: { baseDelayMs: 10 } })
  t.same(unwrap(await client.GET('/v1/regions')), { items: [] })
  t.equal(seen.length, 2, 'a date in the past: retried at once')
  t.equal((await client.GET('/v1/apps')).response.status, 500)
  t.equal(seen.length, 3, 'a 500 is not retried')
  t.same(unwrap(await client.GET('/v1/admin/hosts')), { items: [], nextCursor: null })
  t.equal(seen.length, 5, 'a 429 without Retry-After is retried after a backoff')
})

t.test('sdk › errors › an answer that is not problem+json still becomes a FractalProblemError', async (t) => {
  const { baseUrl } = await scripted(t, (_req, _n, res) => { res.writeHead(502, { 'content-type': 'text/html' }); res.end('<html>Bad gateway</html>') })
  const err = await createFractalClient({ baseUrl }).GET('/v1/regions').then(unwrap).catch((e: unknown) => e)
  t.ok(err instanceof FractalProblemError)
  t.match(err, { status: 502, code: 'unexpected_response', title: 'Bad Gateway', detail: '<html>Bad gateway</html>', errors: [] })
})

t.test('sdk › streamJob › CRLF lines, comments and retry:, resumed with Last-Event-ID after the stream ends early', async (t) => {
  let streams = 0
  const { baseUrl, seen } = await scripted(t, (req, _n, res) => {
    // The stream ended early: the client asks how the job is before it reconnects.
    if (!req.url.endsWith('/events')) return json(res, 200, job('running', 40))
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    if (streams++ === 0) {
      // Cut mid-event: the half event is dropped, and the client comes back after `retry:` ms.
      const text = `retry: 10\r\n: keep-alive\r\n\r\nid: 100\r\nevent: progress\r\ndata: ${JSON.stringify(job('running', 40))}\r\n\r\nid: 101\r\nevent: progress\r\ndata: {"trunc`
      const cut = [5, 17, 40, 41, 90]
      let from = 0
      for (const at of [...cut, text.length]) { res.write(text.slice(from, at)); from = at }
      return res.end()
    }
    res.end(`id: 102\nevent: progress\ndata: ${JSON.stringify(job('running', 80))}\n\nid: 103\nevent: succeeded\ndata: ${JSON.stringify(job('succeeded', 100))}\n\nid: 104\nevent: progress\ndata: {}\n\n`)
  })
  const client = createFractalClient({ baseUrl, accessToken: 'token' })

  const events: JobEvent[] = []
  for await (const event of client.streamJob(job('running', 0).id, { reconnectDelayMs: 5000 })) events.push(event)

  t.same(events.map((e) => [e.id, e.event, e.data.progress]), [['100', 'progress', 40], ['102', 'progress', 80], ['103', 'succeeded', 100]], 'nothing after the terminal event')
  t.same(seen.map((s) => [s.url.split('/').at(-1), s.headers['last-event-id']]), [['events', undefined], [job('', 0).id, undefined], ['events', '100']])
  t.ok(seen.every((s) => s.headers.authorization === 'Bearer token'))
})

t.test('sdk › streamJob › a stream that ends with nothing newer while the job has ended: its state ends the wait', async (t) => {
  const { baseUrl, seen } = await scripted(t, (req, _n, res) => {
    if (!req.url.endsWith('/events')) return json(res, 200, job('succeeded', 100))
    res.writeHead(200, { 'content-type': 'text/event-stream' })
    res.end(': nothing newer than your Last-Event-ID\n\n')
  })
  const client = createFractalClient({ baseUrl })
  const done = await client.waitForJob(job('', 0).id, { lastEventId: '99' })
  t.match(done, { state: 'succeeded', progress: 100 })
  t.equal(seen.length, 2, 'one stream, one read of the job, no reconnection loop')
})

t.test('sdk › streamJob › a 404 is final; a server that keeps failing gives up after maxReconnects', async (t) => {
  const { baseUrl, seen } = await scripted(t, (req, _n, res) => req.url!.includes('missing') ? problem(res, 404, 'not_found') : problem(res, 502, 'unavailable'))
  const client = createFractalClient({ baseUrl, retries: 0 })
  await t.rejects(client.waitForJob('missing'), { status: 404, code: 'not_found' })
  t.equal(seen.length, 1)
  t.match(await client.waitForJob('broken', { maxReconnects: 2, reconnectDelayMs: 1 }).catch((e: unknown) => e), { status: 502, code: 'unavailable' })
  t.equal(seen.length, 4, 'the first try and two reconnections')
})

t.test('sdk › event stream › chunks split anywhere (inside CRLF, inside a UTF-8 character) read the same as one', async (t) => {
  const text = 'retry: 50\r\n:comment\r\nid: 1\r\nevent: progress\r\ndata: {"message":"Zürich"}\r\n\r\ndata: line one\ndata:line two\r\rid: 2\nevent: succeeded\ndata\n\nid: 3\ndata: unterminated'
  const bytes = new TextEncoder().encode(text)
  const read = async (cuts: number[]) => {
    const chunks = [0, ...cuts, bytes.length].slice(1).map((end, i, ends) => bytes.slice(i === 0 ? 0 : ends[i - 1], end))
    const stream = new ReadableStream<Uint8Array>({ start (c) { for (const chunk of chunks) c.enqueue(chunk); c.close() } })
    const events = []
    for await (const event of readServerSentEvents(stream)) events.push(event)
    return events
  }
  const whole = await read([])
  t.same(whole, [
    { id: '1', event: 'progress', data: '{"message":"Zürich"}', retry: 50 },
    { id: '1', event: 'message', data: 'line one\nline two', retry: 50 },
    { id: '2', event: 'succeeded', data: '', retry: 50 }
  ], 'the last event, never ended by a blank line, is dropped')
  const crlf = text.indexOf('\r\n') + 1
  const umlaut = bytes.indexOf(0xc3) + 1
  t.same(await read([crlf, umlaut]), whole, 'split inside CRLF and inside ü')
  t.same(await read(Array.from({ length: bytes.length - 1 }, (_, i) => i + 1)), whole, 'one byte at a time')
})
