import { randomUUID } from 'node:crypto'
import pg from 'pg'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { given } from '../../helpers/given.js'
import { histogramTotals } from '../../helpers/metrics.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
const assign = (app: App, headers: Record<string, string>, body: object, key: string = randomUUID()) =>
  app.inject({ method: 'POST', url: '/v1/containers', payload: body, headers: { ...headers, 'idempotency-key': key } })

t.test('assignContainer › valid › a warm container is handed out at once with its connection info', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const user = await given(app).signedIn()

  const res = await assign(app, user.headers, { app: offer.app, region: offer.region, dpi: 144 })

  t.equal(res.statusCode, 201)
  t.match(res.json(), { id: warm.id, app: offer.app, region: offer.region, state: 'in_use', dpi: 144, connection: null, connectable: true })
  // The connection details, the AES key among them, come with a connection grant (issue 22).
  const granted = await app.inject({ method: 'POST', url: `/v1/containers/${warm.id}/grants`, headers: user.headers })
  t.match(granted.json().connection, { ip: '198.51.100.7', ports: { tcp32262: 41000, udp32263: 41001, tcp32273: 41002 }, aesKey: warm.aes_key })
  t.notMatch(res.body, new RegExp(warm.secret), 'never the container secret')
  const row = await app.db.selectFrom('container').selectAll().where('id', '=', warm.id).executeTakeFirstOrThrow()
  t.equal(row.user_id, user.account.id)
  const events = await app.db.selectFrom('container_event').selectAll().where('container_id', '=', warm.id).execute()
  t.match(events, [{ from_state: 'available', to_state: 'in_use' }])
})

t.test('assignContainer › valid › with an empty pool a container starts: 202, Location, a job that ends with it running', async (t) => {
  const app = await build(t, { SIMULATED_START_MS: '0' })
  const offer = await given(app).offer()
  const user = await given(app).signedIn()

  const res = await assign(app, user.headers, { app: offer.app })

  t.equal(res.statusCode, 202)
  const { job, container } = res.json()
  t.equal(res.headers.location, `/v1/jobs/${job.id}`)
  t.match(container, { state: 'creating', connection: null, region: offer.region })
  t.match(job, { kind: 'start_container', state: 'queued' })

  app.queue.startWorker(2)
  t.ok(await until(async () => (await app.inject({ method: 'GET', url: `/v1/jobs/${job.id}`, headers: user.headers })).json().state === 'succeeded'))
  const read = await app.inject({ method: 'GET', url: `/v1/containers/${container.id}`, headers: user.headers })
  t.equal(read.statusCode, 200)
  t.match(read.json(), { state: 'in_use', connection: null, connectable: true })
  const granted = await app.inject({ method: 'POST', url: `/v1/containers/${container.id}/grants`, headers: user.headers })
  t.match(granted.json(), { connection: { ip: /^203\.0\.113\./ } }, 'its address comes with a grant')
  const events = await app.db.selectFrom('container_event').select(['from_state', 'to_state']).where('container_id', '=', container.id).orderBy('id').execute()
  t.same(events, [{ from_state: null, to_state: 'creating' }, { from_state: 'creating', to_state: 'starting' }, { from_state: 'starting', to_state: 'in_use' }])
})

t.test('assignContainer › valid › a replay with the same Idempotency-Key returns the first answer; another body is 422', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  const key = randomUUID()

  const answers = await Promise.all([1, 2, 3].map(() => assign(app, user.headers, { app: offer.app }, key)))
  t.same(answers.map((a) => a.statusCode), [201, 201, 201])
  t.equal(new Set(answers.map((a) => a.json().id)).size, 1, 'one container, three answers')
  const held = await app.db.selectFrom('container').select('id').where('user_id', '=', user.account.id).execute()
  t.equal(held.length, 1)

  const other = await assign(app, user.headers, { app: offer.app, dpi: 200 }, key)
  t.equal(other.statusCode, 422)
  t.equal(other.json().code, 'unprocessable')
})

t.test('assignContainer › concurrency › 30 users and 10 warm containers: each container to exactly one user, the rest start', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  for (let i = 0; i < 10; i++) await given(app).warmContainer(offer)
  const users = await Promise.all(Array.from({ length: 30 }, () => given(app).signedIn()))

  const answers = await Promise.all(users.map((u) => assign(app, u.headers, { app: offer.app, region: offer.region })))

  const warm = answers.filter((a) => a.statusCode === 201)
  const cold = answers.filter((a) => a.statusCode === 202)
  t.equal(warm.length, 10)
  t.equal(cold.length, 20)
  t.equal(new Set(warm.map((a) => a.json().id)).size, 10, 'no container handed out twice')
  const owners = await app.db.selectFrom('container').select(['user_id']).where('app_id', '=', offer.app).execute()
  t.equal(new Set(owners.map((o) => o.user_id)).size, 30, 'one container per user')
})

t.test('assignContainer › concurrency › assignments made at once share transactions; one refused is rolled back alone, the others answered as if alone', async (t) => {
  const app = await build(t, { ASSIGN_BATCHES_IN_FLIGHT: '1' })
  const offer = await given(app).offer()
  for (let i = 0; i < 4; i++) await given(app).warmContainer(offer)
  const users = await Promise.all(Array.from({ length: 6 }, () => given(app).signedIn()))
  const running = await given(app).signedIn()
  t.equal((await assign(app, running.headers, { app: offer.app, region: offer.region })).statusCode, 201)
  const strayKey = randomUUID()

  const [again, stray, ...answers] = await Promise.all([
    assign(app, running.headers, { app: offer.app, region: offer.region }),
    assign(app, users[0]!.headers, { app: 'no-such-app', region: offer.region }, strayKey),
    ...users.map((u) => assign(app, u.headers, { app: offer.app, region: offer.region }))
  ])

  t.match(again!.json(), { status: 409, code: 'conflict' }, 'a second container: refused')
  t.match(stray!.json(), { status: 404, code: 'not_found' }, 'an unknown app: refused')
  t.same(answers.map((a) => a.statusCode).sort(), [201, 201, 201, 202, 202, 202], 'the others: 3 warm (one was taken before), 3 starting')
  // The refused request left nothing behind: its key is free for another body (a replay would be 422).
  const retried = await assign(app, users[0]!.headers, { app: offer.app, region: offer.region }, strayKey)
  t.equal(retried.statusCode, 409, 'answered afresh: the user has a container by now')
  const { sum, count } = await histogramTotals(app, 'container_assignment_batch_size')
  t.equal(sum, 10, 'every assignment went through a batch')
  t.ok(count < sum, `fewer transactions than assignments (${count} for ${sum})`)
})

t.test('assignContainer › concurrency › two users asking three times each at once, in crossed order, batches two at a time: one container each, no deadlock', async (t) => {
  const app = await build(t, { ASSIGN_BATCHES_IN_FLIGHT: '3', ASSIGN_BATCH_SIZE: '2' })
  const offer = await given(app).offer()
  await given(app).warmContainer(offer)
  const [a, b] = await Promise.all([given(app).signedIn(), given(app).signedIn()])
  const order = [a!, b!, b!, a!, a!, b!]

  const answers = await Promise.all(order.map((u) => assign(app, u.headers, { app: offer.app, region: offer.region })))

  for (const user of [a!, b!]) {
    const own = answers.filter((_, i) => order[i] === user).map((r) => r.statusCode).sort()
    t.equal(own.filter((s) => s === 409).length, 2, 'two refused as already running')
    t.equal(own.filter((s) => s === 201 || s === 202).length, 1, 'one container')
  }
  t.equal(answers.filter((r) => r.statusCode === 201).length, 1, 'the one warm container to one of them')
})

t.test('assignContainer › valid › a session that planned its statements on a young Idempotency-Key table still writes answers through the index once the table is large', async (t) => {
  // PL/pgSQL caches each statement's plan per session. The answer used to be written by an update whose
  // cached plan, made while the table was nearly empty, was a sequential scan: every assignment then read
  // the whole table (throughput fell from 4,400 to 1,300 a second within ten seconds on the bench).
  const app = await build(t)
  const offer = await given(app).offer()
  const session = new pg.Client({ connectionString: app.config.db.url! })
  await session.connect()
  t.teardown(() => session.end())
  const assignIn = async (userId: string) => {
    const item = { user: userId, key: randomUUID(), hash: 'h', app: offer.app, region: offer.region, dpi: null, aesKey: 'k', secretHash: 's', deadline: new Date(Date.now() + 60_000).toISOString(), terms: null, prefer: null }
    const { rows } = await session.query('select fractal_assign_containers($1::jsonb) as answers', [JSON.stringify([item])])
    t.ok(rows[0].answers[0].ok, 'assigned')
  }
  // A young table: a few rows, analyzed (as autovacuum does soon after the first inserts)...
  for (let i = 0; i < 3; i++) await assignIn((await given(app).user()).id)
  await session.query('analyze idempotency_record')
  // ...and plans made and cached with those statistics (a generic plan after five runs).
  for (let i = 0; i < 8; i++) await assignIn((await given(app).user()).id)
  // Then it grows faster than autovacuum analyzes it again.
  await session.query(`insert into idempotency_record (user_id, key, request_hash, status, body)
    select a.id, 'k' || g, 'h', 201, '{}' from account a, generate_series(1, 2500) g`)

  await session.query('begin')
  await assignIn((await given(app).user()).id)
  const { rows: [scans] } = await session.query("select seq_scan::int, idx_scan::int from pg_stat_xact_user_tables where relname = 'idempotency_record'")
  await session.query('commit')
  t.equal(scans.seq_scan, 0, 'no sequential scan of idempotency_record')
  t.ok(scans.idx_scan >= 1, 'its primary key used instead')
})

t.test('assignContainer › faults › an assignment stuck behind a lock is cancelled after DATABASE_STATEMENT_TIMEOUT_MS: 503 with Retry-After, nothing written; the same key goes through once the lock is gone', async (t) => {
  const app = await build(t, { DATABASE_STATEMENT_TIMEOUT_MS: '300' })
  const offer = await given(app).offer()
  const warm = await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  // Another transaction holds the lock an assignment of this user and app takes (its advisory lock).
  const locker = new pg.Client({ connectionString: app.config.db.url! })
  await locker.connect()
  t.teardown(() => locker.end())
  await locker.query('begin')
  await locker.query("select pg_advisory_xact_lock(hashtextextended($1 || ':' || $2, 0))", [user.account.id, offer.app])
  const key = randomUUID()

  const stuck = await assign(app, user.headers, { app: offer.app, region: offer.region }, key)

  t.equal(stuck.statusCode, 503)
  t.match(stuck.json(), { code: 'unavailable' })
  t.ok(Number(stuck.headers['retry-after']) > 0, 'Retry-After')
  t.equal((await app.db.selectFrom('idempotency_record').select('key').where('user_id', '=', user.account.id).execute()).length, 0, 'no Idempotency-Key row')
  t.match(await app.db.selectFrom('container').select(['state', 'user_id']).where('id', '=', warm.id).executeTakeFirstOrThrow(), { state: 'available', user_id: null })
  await locker.query('commit')
  const again = await assign(app, user.headers, { app: offer.app, region: offer.region }, key)
  t.equal(again.statusCode, 201)
  t.equal(again.json().id, warm.id)
})

t.test('assignContainer › invalid input › missing or malformed key, bad body, second container, disabled region', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const user = await given(app).signedIn()
  const noKey = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: user.headers })
  t.equal(noKey.statusCode, 400)
  t.ok(noKey.json().errors.some((e: { field: string }) => e.field === '/headers/idempotency-key'))
  t.equal((await assign(app, user.headers, { app: offer.app }, 'bad key!')).statusCode, 400)
  for (const body of [{}, { app: 'Chrome!' }, { app: offer.app, dpi: 10 }, { app: offer.app, userId: 'x' }]) {
    t.equal((await assign(app, user.headers, body)).statusCode, 400, JSON.stringify(body))
  }
  t.equal((await app.db.selectFrom('container').selectAll().where('user_id', '=', user.account.id).execute()).length, 0, 'nothing written')

  t.equal((await assign(app, user.headers, { app: offer.app })).statusCode, 202)
  const second = await assign(app, user.headers, { app: offer.app })
  t.equal(second.statusCode, 409)
  t.equal(second.json().code, 'conflict')

  const closed = await given(app).offer({ enabled: false })
  const disabled = await assign(app, user.headers, { app: closed.app, region: closed.region })
  t.equal(disabled.statusCode, 422)
  t.equal(disabled.json().errors[0].field, '/body/region')
})

t.test('assignContainer › insufficient permissions › no token 401, a token without the containers scope 403', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  t.equal((await assign(app, {}, { app: offer.app })).statusCode, 401)
  const res = await assign(app, { authorization: `Bearer ${await given(app).token({ scopes: ['account'] })}` }, { app: offer.app })
  t.equal(res.statusCode, 403)
  t.equal((await app.db.selectFrom('container').selectAll().where('app_id', '=', offer.app).execute()).length, 0)
})

t.test('assignContainer › non-existing › an unknown app or an app not offered in the region is 404', async (t) => {
  const app = await fileApp()
  const offer = await given(app).offer()
  const other = await given(app).offer()
  const user = await given(app).signedIn()
  t.equal((await assign(app, user.headers, { app: 'no-such-app' })).json().code, 'not_found')
  const notHere = await assign(app, user.headers, { app: offer.app, region: other.region })
  t.equal(notHere.statusCode, 404)
})
