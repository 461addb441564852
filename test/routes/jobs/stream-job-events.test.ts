import { randomUUID } from 'node:crypto'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'

type App = Awaited<ReturnType<typeof build>>

async function listen (t: Parameters<typeof build>[0], app: App) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as { port: number }
  return `http://127.0.0.1:${port}`
}

/** Reads a whole event stream into its events. */
async function readEvents (res: Response) {
  const text = await res.text()
  return text.split('\n\n').filter((block) => block.startsWith('id:')).map((block) => {
    const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]))
    return { id: fields.id!, event: fields.event!, data: JSON.parse(fields.data!) }
  })
}

async function startJob (app: App) {
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  return { user, jobId: res.json().job.id as string }
}

t.test('streamJobEvents › valid › progress events over SSE, then the terminal event, then the end', async (t) => {
  const app = await build(t, { SIMULATED_START_MS: '300' })
  const base = await listen(t, app)
  const { user, jobId } = await startJob(app)
  app.queue.startWorker(1)

  const res = await fetch(`${base}/v1/jobs/${jobId}/events`, { headers: user.headers })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/event-stream/)
  const events = await readEvents(res)
  t.ok(events.length >= 2, `${events.length} events`)
  t.equal(events.at(-1)!.event, 'succeeded')
  t.match(events.at(-1)!.data, { id: jobId, state: 'succeeded', progress: 100 })
  t.ok(events.slice(0, -1).every((e) => e.event === 'progress'))
  const ids = events.map((e) => Number(e.id))
  t.same(ids, [...ids].sort((a, b) => a - b), 'ids grow')

  const resumed = await readEvents(await fetch(`${base}/v1/jobs/${jobId}/events`, { headers: { ...user.headers, 'last-event-id': events.at(-1)!.id } }))
  t.same(resumed, [], 'nothing newer than Last-Event-ID')
  const replay = await readEvents(await fetch(`${base}/v1/jobs/${jobId}/events`, { headers: user.headers }))
  t.same(replay.map((e) => e.event), ['succeeded'], 'a finished job replays its end')
})

t.test('streamJobEvents › insufficient permissions › another user gets a 404 problem, no token 401', async (t) => {
  const app = await fileApp()
  const { jobId } = await startJob(app)
  const stranger = await given(app).signedIn()
  const res = await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events`, headers: stranger.headers })
  t.equal(res.statusCode, 404)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events` })).statusCode, 401)
})

t.test('streamJobEvents › invalid input › a malformed id or Last-Event-ID is 400', async (t) => {
  const app = await fileApp()
  const { user, jobId } = await startJob(app)
  t.equal((await app.inject({ method: 'GET', url: '/v1/jobs/x/events', headers: user.headers })).statusCode, 400)
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${jobId}/events`, headers: { ...user.headers, 'last-event-id': 'abc' } })).statusCode, 400)
})

t.test('streamJobEvents › non-existing › 404', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  t.equal((await app.inject({ method: 'GET', url: `/v1/jobs/${randomUUID()}/events`, headers: user.headers })).statusCode, 404)
})

t.test('streamJobEvents › valid › a client that saw a progress event of the same millisecond as the end still gets the terminal event', async (t) => {
  const app = await fileApp()
  const user = await given(app).signedIn()
  const job = await app.db.insertInto('job').values({ kind: 'start_container', owner_id: user.account.id, message: 'queued', deadline_at: new Date(Date.now() + 60_000) }).returningAll().executeTakeFirstOrThrow()
  const at = new Date()
  // The last progress the client saw, and the end, in the same millisecond.
  await app.db.updateTable('job').set({ state: 'succeeded', progress: 100, updated_at: at }).where('id', '=', job.id).execute()
  const res = await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers: { ...user.headers, 'last-event-id': String(at.getTime()) } })
  t.match(res.body, /event: succeeded/, 'the end is not lost')
  const again = await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}/events`, headers: { ...user.headers, 'last-event-id': String(at.getTime() + 1) } })
  t.notMatch(again.body, /event: succeeded/, 'and not sent twice once seen')
})
