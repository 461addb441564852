// Issue 22: the per-container event stream, where a client hears that its session will end (and why) before
// the container stops.
import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { bearer, given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>

async function listen (app: App) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return `http://127.0.0.1:${port}`
}

interface Event { id: string, event: string, data: Record<string, unknown> }

/** Reads events off a stream as they come, until `stop` says enough (or the stream ends). */
async function readUntil (res: Response, stop: (events: Event[]) => boolean) {
  const reader = res.body!.getReader()
  const decoder = new TextDecoder()
  const events: Event[] = []
  let buffer = ''
  while (!stop(events)) {
    const { done, value } = await reader.read()
    if (done) break
    buffer += decoder.decode(value, { stream: true })
    let end: number
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, end)
      buffer = buffer.slice(end + 2)
      if (!block.startsWith('id:')) continue
      const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]))
      events.push({ id: fields.id!, event: fields.event!, data: JSON.parse(fields.data!) })
    }
  }
  await reader.cancel().catch(() => {})
  return events
}

t.test('streamContainerEvents › valid › the warning, then the end of the session and the stop, then the stream ends', async (t) => {
  const clock = new TestClock()
  const app = await build(t, { SESSION_DISCONNECT_TIMEOUT_SECONDS: '600', SESSION_WARNING_SECONDS: '120' }, { clock })
  const base = await listen(app)
  const { user, container } = await given(app).assignedContainer()
  const res = await fetch(`${base}/v1/containers/${container.id}/events`, { headers: user.headers })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  const reading = readUntil(res, (events) => events.some((e) => e.data.toState === 'stopped'))

  clock.advance(9 * 60_000)
  t.match(await app.schedules.runOnce('session-limits'), { sessionsWarned: 1 })
  clock.advance(2 * 60_000)
  t.match(await app.schedules.runOnce('session-limits'), { sessionsEnded: 1 })
  app.queue.startWorker(1)
  const events = await reading
  const session = events.filter((e) => e.event !== 'state')
  t.match(session, [
    { event: 'session_warning', data: { kind: 'session_warning', reason: 'disconnected', endsAt: String, toState: 'in_use' } },
    { event: 'session_ended', data: { kind: 'session_ended', reason: 'disconnected', toState: 'stopping' } }
  ])
  t.equal(events.at(-1)!.data.toState, 'stopped')
  const ids = events.map((e) => Number(e.id))
  t.same(ids, [...ids].sort((a, b) => a - b), 'ids grow')

  // The container has ended: a new stream replays what came after Last-Event-ID, then ends.
  const headers = bearer(await given(app).token({ sub: user.account.id, scopes: ['containers'] }))
  const resumed = await readUntil(await fetch(`${base}/v1/containers/${container.id}/events`, { headers: { ...headers, 'last-event-id': session[0]!.id } }), () => false)
  t.same(resumed.map((e) => e.id), events.filter((e) => Number(e.id) > Number(session[0]!.id)).map((e) => e.id), 'only newer events')
})

t.test('streamContainerEvents › insufficient permissions › another user gets a 404 problem, no token 401', async (t) => {
  const app = await build(t)
  const { container } = await given(app).assignedContainer()
  const stranger = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}/events`, headers: stranger.headers })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${container.id}/events` })).statusCode, 401)
})

t.test('streamContainerEvents › invalid input › a malformed id or Last-Event-ID is 400', async (t) => {
  const app = await build(t)
  const { user, container } = await given(app).assignedContainer()
  t.equal((await app.inject({ method: 'GET', url: '/v1/containers/x/events', headers: user.headers })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: `/v1/containers/${container.id}/events`, headers: { ...user.headers, 'last-event-id': 'abc' } })).statusCode, 400)
})

t.test('streamContainerEvents › non-existing › 404', async (t) => {
  const app = await build(t)
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: `/v1/containers/${randomUUID()}/events`, headers: user.headers })
  t.equal(res.statusCode, 404)
  t.equal(res.json().code, 'not_found')
})
