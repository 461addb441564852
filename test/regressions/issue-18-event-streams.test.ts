// Issue 18, item 12: 30 of 30 concurrent event streams of one user on one job were accepted, each polling the
// job row 4 times a second. Streams are now capped per user (across processes) and per process, and fed by
// committed job updates over the broadcast plugin: a changed job is read once per process, not per stream.
import { randomUUID } from 'node:crypto'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { Kysely, PostgresDialect } from '../../db/kysely.js'
import pg from 'pg'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import type { DB } from '../../db/types.js'
import { updateJob } from '../../services/containers/containers.repository.js'
import { build, twoProcesses } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

async function listen (app: FastifyInstance) {
  await app.listen({ port: 0, host: '127.0.0.1' })
  return `http://127.0.0.1:${(app.server.address() as { port: number }).port}`
}

interface Stream {
  status: number
  headers: IncomingHttpHeaders
  text (): string
  /** The terminal events and progress events received so far. */
  events (): Array<{ id: string, event: string, data: Record<string, unknown> }>
  /** Resolves when the response is over (ended by the server, or cut). */
  ended: Promise<void>
  /** Cuts the connection, as a client that goes away does. */
  destroy (): void
}

/** A GET on its own socket, resolved with the answer's head; the body keeps arriving. */
function get (base: string, path: string, headers: Record<string, string>): Promise<Stream> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${base}${path}`, { headers, agent: false })
    req.on('error', reject)
    req.on('response', (res) => {
      let text = ''
      res.setEncoding('utf8')
      res.on('data', (chunk: string) => { text += chunk })
      res.on('error', () => {})
      const ended = new Promise<void>((resolve) => res.on('close', resolve))
      resolve({
        status: res.statusCode!,
        headers: res.headers,
        text: () => text,
        events: () => text.split('\n\n').filter((block) => block.startsWith('id:')).map((block) => {
          const fields = Object.fromEntries(block.split('\n').map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 2)]))
          return { id: fields.id!, event: fields.event!, data: JSON.parse(fields.data!) }
        }),
        ended,
        destroy: () => req.destroy()
      })
    })
    req.end()
  })
}

/** A start job of `user` that nobody works on: its stream stays open until the job changes or the client goes. */
async function queuedJob (app: FastifyInstance, user: { account: { id: string } }) {
  return app.db.insertInto('job').values({ kind: 'start_container', owner_id: user.account.id, message: 'queued', deadline_at: new Date(Date.now() + 600_000) })
    .returningAll().executeTakeFirstOrThrow()
}

/** Slots a user holds in Redis (every process's). */
const slotsOf = (app: FastifyInstance, user: { account: { id: string } }) => app.redis.zcard(`streams:user:${user.account.id}`)

/** Counts the reads of the job table through `app.db` (the route, the service and the feed all read through it). */
function countJobReads (app: FastifyInstance) {
  const counter = { reads: 0 }
  const original = app.db.selectFrom.bind(app.db)
  app.db.selectFrom = ((...args: Parameters<typeof original>) => {
    if (args[0] === 'job') counter.reads++
    return original(...args)
  }) as typeof original
  return counter
}

t.test('streamJobEvents › valid › 30 concurrent streams of one user: exactly EVENT_STREAMS_PER_USER open, the rest 429; closing one frees a place; another user is not affected', async (t) => {
  const app = await build(t, { EVENT_STREAMS_PER_USER: '5', JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const job = await queuedJob(app, user)
  const url = `/v1/jobs/${job.id}/events`

  const all = await Promise.all(Array.from({ length: 30 }, () => get(base, url, user.headers)))
  t.teardown(() => { for (const s of all) s.destroy() })
  const open = all.filter((s) => s.status === 200)
  const refused = all.filter((s) => s.status === 429)
  t.equal(open.length, 5, 'exactly the cap is accepted')
  t.equal(refused.length, 25, 'the rest is refused')
  await Promise.all(refused.map((s) => s.ended))
  for (const s of refused) {
    t.match(s.headers['content-type'], /^application\/problem\+json/)
    t.equal(s.headers['retry-after'], '5')
    t.match(JSON.parse(s.text()), { status: 429, code: 'rate_limited' })
  }
  t.ok(await until(() => open.every((s) => /event: progress/.test(s.text()))), 'the open ones got the current state')
  t.equal(await slotsOf(app, user), 5)

  const other = await given(app).signedIn()
  const theirs = await get(base, `/v1/jobs/${(await queuedJob(app, other)).id}/events`, other.headers)
  t.teardown(() => theirs.destroy())
  t.equal(theirs.status, 200, 'another user is not affected')

  open[0]!.destroy()
  t.ok(await until(async () => await slotsOf(app, user) === 4 && app.eventStreams.open === 5), 'the closed stream gave its place back')
  const again = await get(base, url, user.headers)
  t.teardown(() => again.destroy())
  t.equal(again.status, 200, 'the freed place is taken')
  const over = await get(base, url, user.headers)
  t.equal(over.status, 429, 'and the cap holds again')
})

t.test('streamJobEvents › valid › the per-user cap holds across processes sharing Redis', async (t) => {
  const { a, b } = await twoProcesses(t, { EVENT_STREAMS_PER_USER: '5' })
  const [baseA, baseB] = [await listen(a), await listen(b)]
  const user = await given(a).signedIn()
  const url = `/v1/jobs/${(await queuedJob(a, user)).id}/events`
  const streams = await Promise.all([
    ...Array.from({ length: 8 }, () => get(baseA, url, user.headers)),
    ...Array.from({ length: 8 }, () => get(baseB, url, user.headers))
  ])
  t.teardown(() => { for (const s of streams) s.destroy() })
  t.equal(streams.filter((s) => s.status === 200).length, 5, 'five in all, whichever process took them')
  t.equal(streams.filter((s) => s.status === 429).length, 11)
  t.equal(a.eventStreams.open + b.eventStreams.open, 5)
})

t.test('streamJobEvents › valid › EVENT_STREAMS_PER_PROCESS caps one process whoever asks; another process still takes streams', async (t) => {
  const { a, b } = await twoProcesses(t, { EVENT_STREAMS_PER_PROCESS: '3', EVENT_STREAMS_PER_USER: '5' })
  const [baseA, baseB] = [await listen(a), await listen(b)]
  const one = await given(a).signedIn()
  const two = await given(a).signedIn()
  const [jobOne, jobTwo] = [await queuedJob(a, one), await queuedJob(a, two)]
  const first = await Promise.all([get(baseA, `/v1/jobs/${jobOne.id}/events`, one.headers), get(baseA, `/v1/jobs/${jobOne.id}/events`, one.headers), get(baseA, `/v1/jobs/${jobTwo.id}/events`, two.headers)])
  t.teardown(() => { for (const s of first) s.destroy() })
  t.same(first.map((s) => s.status), [200, 200, 200])

  const refused = await get(baseA, `/v1/jobs/${jobTwo.id}/events`, two.headers)
  t.equal(refused.status, 429, 'a user under their own cap is refused by a full process')
  await refused.ended
  t.match(JSON.parse(refused.text()), { code: 'rate_limited', detail: /server/ })
  t.equal(refused.headers['retry-after'], '5')
  const elsewhere = await get(baseB, `/v1/jobs/${jobTwo.id}/events`, two.headers)
  t.teardown(() => elsewhere.destroy())
  t.equal(elsewhere.status, 200, 'another process has room')
  t.equal(await slotsOf(a, two), 2, 'the refused stream holds no slot')
})

t.test('streamJobEvents › valid › progress and the end written by another process reach every stream, with one read of the job per change for all of them', async (t) => {
  const { a: web, b: worker } = await twoProcesses(t, { EVENT_STREAMS_PER_USER: '5', JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(web)
  const user = await given(web).signedIn()
  const job = await queuedJob(web, user)
  const counter = countJobReads(web)

  const streams = await Promise.all(Array.from({ length: 5 }, () => get(base, `/v1/jobs/${job.id}/events`, user.headers)))
  t.teardown(() => { for (const s of streams) s.destroy() })
  t.same(streams.map((s) => s.status), [200, 200, 200, 200, 200])
  t.ok(await until(() => streams.every((s) => s.events().length === 1)), 'each stream sent the current state first')
  t.equal(counter.reads, 5, 'one read per stream, when it opens')

  // The worker's writes: its own database client, told to the web process over Redis only.
  for (const progress of [40, 70]) {
    await updateJob(worker.db, job.id, { state: 'running', progress })
    t.ok(await until(() => streams.every((s) => s.events().some((e) => e.data.progress === progress))), `every stream got progress ${progress}`)
  }
  await updateJob(worker.db, job.id, { state: 'succeeded', progress: 100, message: 'running' })
  await Promise.all(streams.map((s) => s.ended))
  for (const s of streams) {
    t.same(s.events().map((e) => [e.event, e.data.progress]), [['progress', 0], ['progress', 40], ['progress', 70], ['succeeded', 100]], 'every version once, then the end, then the stream ends')
  }
  const afterOpening = counter.reads - 5
  t.ok(afterOpening >= 1 && afterOpening <= 3, `three changes, five streams: ${afterOpening} reads of the job (one per change at most, never per stream)`)
  t.ok(await until(async () => web.eventStreams.open === 0 && await slotsOf(web, user) === 0), 'the ended streams gave their places back')
})

t.test('streamJobEvents › valid › a start job run by a worker process streams to the web process until it succeeds', async (t) => {
  const { a: web, b: worker } = await twoProcesses(t, { SIMULATED_START_MS: '200', JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(web)
  const offer = await given(web).offer()
  const user = await given(web).signedIn()
  const res = await web.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
  const jobId = res.json().job.id as string
  const stream = await get(base, `/v1/jobs/${jobId}/events`, user.headers)
  t.teardown(() => stream.destroy())
  t.equal(stream.status, 200)
  worker.queue.startWorker(1)
  await stream.ended
  const events = stream.events()
  t.equal(events.at(-1)?.event, 'succeeded', 'the final state arrives')
  t.ok(events.slice(0, -1).every((e) => e.event === 'progress'))
})

t.test('streamJobEvents › valid › a change made in the same process (a cancel) reaches its streams', async (t) => {
  const app = await build(t, { JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const job = await queuedJob(app, user)
  const stream = await get(base, `/v1/jobs/${job.id}/events`, user.headers)
  t.teardown(() => stream.destroy())
  t.ok(await until(() => stream.events().length === 1))
  t.equal((await app.inject({ method: 'POST', url: `/v1/jobs/${job.id}/cancel`, headers: user.headers })).statusCode, 200)
  await stream.ended
  t.equal(stream.events().at(-1)?.event, 'cancelled')
})

/** `builder` (a kysely query builder) and those made from it, running `after` once its row is read. */
function afterRead<T extends object> (builder: T, after: () => Promise<void>): T {
  return new Proxy(builder, {
    get (target, property) {
      const value = Reflect.get(target, property, target)
      if (typeof value !== 'function') return value
      if (property === 'executeTakeFirst') {
        return async (...args: unknown[]) => {
          const row = await value.apply(target, args)
          await after()
          return row
        }
      }
      return (...args: unknown[]) => {
        const next = value.apply(target, args)
        return next && typeof next === 'object' && 'executeTakeFirst' in next ? afterRead(next, after) : next
      }
    }
  })
}

t.test('streamJobEvents › valid › the end committed between the first read of the job by a stream and its first event is not lost', async (t) => {
  const app = await build(t, { JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const job = await queuedJob(app, user)
  // The stream's first read answers `queued`; before the stream goes on, the job succeeds (and that is told
  // at once: the write is this process's). A stream that subscribed only after its read would never hear it.
  const original = app.db.selectFrom.bind(app.db)
  let raced = false
  app.db.selectFrom = ((...args: Parameters<typeof original>) => {
    const builder = original(...args)
    if (args[0] !== 'job' || raced) return builder
    raced = true
    return afterRead(builder, async () => { await updateJob(app.db, job.id, { state: 'succeeded', progress: 100 }) })
  }) as typeof original
  const stream = await get(base, `/v1/jobs/${job.id}/events`, user.headers)
  t.teardown(() => stream.destroy())
  t.equal(stream.status, 200)
  t.ok(raced, 'the first read was raced')
  t.ok(await until(() => stream.events().some((e) => e.event === 'succeeded')), 'the end arrives')
  await stream.ended
  t.same(stream.events().map((e) => e.event), ['progress', 'succeeded'])
})

t.test('streamJobEvents › valid › an end stamped earlier than the last progress (its transaction began first) still ends the stream with its terminal event', async (t) => {
  const app = await build(t, { JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const job = await queuedJob(app, user)
  const stream = await get(base, `/v1/jobs/${job.id}/events`, user.headers)
  t.teardown(() => stream.destroy())
  t.ok(await until(() => stream.events().length === 1))
  // updated_at is now(): the start of the writing transaction. The ping's transaction that ends a start can
  // begin before the start job's last progress update commits, and commit after it.
  const at = Date.now() + 60_000
  await app.db.updateTable('job').set({ state: 'running', progress: 70, updated_at: new Date(at) }).where('id', '=', job.id).execute()
  t.ok(await until(() => stream.events().length === 2), 'the progress arrives')
  await app.db.updateTable('job').set({ state: 'succeeded', progress: 100, updated_at: new Date(at - 1000) }).where('id', '=', job.id).execute()
  t.ok(await until(() => stream.events().some((e) => e.event === 'succeeded')), 'the end arrives')
  await stream.ended
  const ids = stream.events().map((e) => Number(e.id))
  t.same(ids, [...ids].sort((a, b) => a - b), 'ids still grow')
  t.equal(ids.at(-1), at + 1, 'the end comes after the last id sent')
})

t.test('streamJobEvents › valid › a change whose announcement was lost arrives with the next resync', async (t) => {
  const app = await build(t, { JOB_EVENTS_RESYNC_MS: '200' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const job = await queuedJob(app, user)
  const stream = await get(base, `/v1/jobs/${job.id}/events`, user.headers)
  t.teardown(() => stream.destroy())
  t.ok(await until(() => stream.events().length === 1))
  // A client of its own: nobody is told of this write, as if the message were lost in a Redis reconnect.
  const pool = new pg.Pool({ connectionString: app.config.db.url!, max: 1 })
  const silent = new Kysely<DB>({ dialect: new PostgresDialect({ pool }) })
  t.teardown(() => silent.destroy())
  await updateJob(silent, job.id, { state: 'succeeded', progress: 100 })
  await stream.ended
  t.equal(stream.events().at(-1)?.event, 'succeeded')
})

t.test('streamJobEvents › valid › clients that go away abruptly, at any moment, leave no slot behind', async (t) => {
  const app = await build(t, { EVENT_STREAMS_PER_USER: '5', JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const url = `/v1/jobs/${(await queuedJob(app, user)).id}/events`
  const free = async () => app.eventStreams.open === 0 && await slotsOf(app, user) === 0

  const streams = await Promise.all(Array.from({ length: 5 }, () => get(base, url, user.headers)))
  t.same(streams.map((s) => s.status), [200, 200, 200, 200, 200])
  const sixth = await get(base, url, user.headers)
  t.equal(sixth.status, 429, 'the cap is reached')
  for (const s of streams) s.destroy()
  t.ok(await until(free), 'every cut stream gave its place back')

  // Cut at every stage: before the request is read, during authentication or admission, after the answer.
  await Promise.all(Array.from({ length: 30 }, (_, i) => new Promise<void>((resolve) => {
    const req = httpRequest(`${base}${url}`, { headers: user.headers, agent: false })
    req.on('error', () => resolve())
    req.on('response', (res) => { res.on('error', () => {}); req.destroy(); resolve() })
    req.on('close', () => resolve())
    req.end()
    setTimeout(() => req.destroy(), i % 10)
  })))
  t.ok(await until(free), 'no place is held after thirty cut requests')
  const after = await Promise.all(Array.from({ length: 5 }, () => get(base, url, user.headers)))
  t.teardown(() => { for (const s of after) s.destroy() })
  t.same(after.map((s) => s.status), [200, 200, 200, 200, 200], 'all five places can be taken again')
})

t.test('streamJobEvents › non-existing › a 404 answer gives its place back', async (t) => {
  const app = await build(t, { EVENT_STREAMS_PER_USER: '2' })
  const base = await listen(app)
  const user = await given(app).signedIn()
  const stranger = await given(app).signedIn()
  const foreign = await queuedJob(app, stranger)
  for (const path of [...Array.from({ length: 5 }, () => `/v1/jobs/${randomUUID()}/events`), `/v1/jobs/${foreign.id}/events`]) {
    const res = await get(base, path, user.headers)
    await res.ended
    t.equal(res.status, 404)
  }
  t.ok(await until(async () => app.eventStreams.open === 0 && await slotsOf(app, user) === 0), 'no place held')
  const url = `/v1/jobs/${(await queuedJob(app, user)).id}/events`
  const streams = await Promise.all([get(base, url, user.headers), get(base, url, user.headers)])
  t.teardown(() => { for (const s of streams) s.destroy() })
  t.same(streams.map((s) => s.status), [200, 200])
})

t.test('streamJobEvents › valid › shutting down ends the open streams and gives their places back before Redis closes', async (t) => {
  const { a: web, b: other } = await twoProcesses(t, { JOB_EVENTS_RESYNC_MS: '600000' })
  const base = await listen(web)
  const user = await given(web).signedIn()
  const url = `/v1/jobs/${(await queuedJob(web, user)).id}/events`
  const streams = await Promise.all(Array.from({ length: 3 }, () => get(base, url, user.headers)))
  t.same(streams.map((s) => s.status), [200, 200, 200])
  t.equal(await slotsOf(other, user), 3)
  await web.close()
  await Promise.all(streams.map((s) => s.ended))
  t.equal(await slotsOf(other, user), 0, 'no slot left in Redis')
})
