// PostgreSQL restarting (pg_ctl restart -m fast, then stop – pause – start) under a stream of reads and
// writes, on a cluster of the test's own: meanwhile every answer is a 2xx or a 503 problem with
// Retry-After (never a 500, never a hang), afterwards everything succeeds again without restarting the
// app, and no write is half done (an account without its verification token, a container without its
// start job, a start job committed but never queued).
import { randomBytes, randomUUID } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { sql } from '../../db/kysely.js'
import pg from 'pg'
import t from 'tap'
import { createDatabase } from '../../db/database.js'
import { migrateToLatest } from '../../db/migrator.js'
import { accountDepsOf } from '../../routes/accounts/feature.js'
import { openSession } from '../../services/accounts/accounts.service.js'
import { auditContext } from '../../services/audit/audit.service.js'
import { hashPassword } from '../../services/accounts/secrets.js'
import { build } from '../helpers/build.js'
import { given, bearer } from '../helpers/given.js'
import { postgresUnavailable, startPostgres } from '../helpers/postgres-server.js'
import { until } from '../helpers/wait.js'

/** Longer than this is a hang: the pool gives up connecting after 5 s (db/database.ts). */
const boundMs = 7000

type Phase = 'before' | 'restarting' | 'stopped' | 'starting' | 'after'
interface Outcome { op: 'me' | 'listContainers' | 'signUp' | 'assign', phase: Phase, ended: Phase, status: number, ms: number, retryAfter: string | null, type: string, code: string | null, ref: string }

t.test('faults › PostgreSQL restarting › 503 problem+json with Retry-After meanwhile, success afterwards without restarting the app, no half-written rows', { skip: postgresUnavailable }, async (t) => {
  const server = await startPostgres()
  t.teardown(() => server.destroy())
  const admin = new pg.Client({ connectionString: server.url })
  await admin.connect()
  await admin.query('create database fractal')
  await admin.end()
  const url = server.url.replace(/\/postgres$/, '/fractal')
  const migrating = await createDatabase({ url, dataDir: '', poolMax: 1 })
  await migrateToLatest(migrating.db)
  await migrating.db.destroy()

  const app = await build(t, { DATABASE_URL: url, RATE_LIMIT_ENABLED: 'false', DATABASE_POOL_MAX: '5' })
  await app.listen({ host: '127.0.0.1', port: 0 })
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`
  const offer = await given(app).offer()

  // Users for the reads and the assignments (one container each): one password hash for all, it is slow.
  const passwordHash = await hashPassword('a-long-unusual-passphrase')
  const accounts = await app.db.insertInto('account')
    .values(Array.from({ length: 80 }, (_, i) => ({ email: `pgfault-user-${i}-${randomBytes(3).toString('hex')}@example.test`, name: 'Fault', password_hash: passwordHash, email_verified_at: new Date() })))
    .returningAll().execute()
  const users = await Promise.all(accounts.map(async (account) => ({ account, headers: bearer((await auditContext.run({ ip: '127.0.0.1', userAgent: 'tap' }, () => openSession(app.db, accountDepsOf(app), account))).accessToken) })))
  const reader = users.pop()!

  let phase: Phase = 'before'
  const traffic = new AbortController()
  t.teardown(() => traffic.abort())
  const outcomes: Outcome[] = []
  const call = async (op: Outcome['op'], ref: string, init: { method: string, path: string, headers?: Record<string, string>, body?: object }) => {
    const at = phase
    const started = performance.now()
    try {
      const res = await fetch(base + init.path, {
        method: init.method,
        headers: { ...init.headers, ...(init.body ? { 'content-type': 'application/json' } : {}) },
        ...(init.body ? { body: JSON.stringify(init.body) } : {}),
        signal: AbortSignal.timeout(boundMs)
      })
      const text = await res.text()
      const type = res.headers.get('content-type') ?? ''
      const code = type.startsWith('application/problem+json') ? (JSON.parse(text) as { code: string }).code : null
      outcomes.push({ op, phase: at, ended: phase, status: res.status, ms: performance.now() - started, retryAfter: res.headers.get('retry-after'), type, code, ref })
    } catch {
      // Aborted by the bound (or the socket died): recorded as status 0, which fails the test below.
      outcomes.push({ op, phase: at, ended: phase, status: 0, ms: performance.now() - started, retryAfter: null, type: '', code: null, ref })
    }
  }
  // The account behind /v1/users/me is cached for 5 s; the list of containers is read from the database.
  const me = () => call('me', reader.account.id, { method: 'GET', path: '/v1/users/me', headers: reader.headers })
  const list = () => call('listContainers', reader.account.id, { method: 'GET', path: '/v1/containers', headers: reader.headers })
  const signUp = () => {
    const email = `pgfault-new-${randomBytes(4).toString('hex')}@example.test`
    return call('signUp', email, { method: 'POST', path: '/v1/accounts', body: { email, password: 'a-long-unusual-passphrase', name: 'New' } })
  }
  const keys = new Map<string, { user: typeof users[number], key: string }>()
  const assign = () => {
    const user = users.pop()
    if (!user) return new Promise((resolve) => setTimeout(resolve, 50))
    const key = randomUUID()
    keys.set(key, { user, key })
    return call('assign', key, { method: 'POST', path: '/v1/containers', headers: { ...user.headers, 'idempotency-key': key }, body: { app: offer.app } })
  }
  // A short breath between requests: a steady stream, not a busy loop that starves the restart on 2 cores
  // (and the assignments last until the end with 80 users).
  const lane = async (request: () => Promise<unknown>, breathMs = 20) => {
    while (!traffic.signal.aborted) {
      await request()
      await new Promise((resolve) => setTimeout(resolve, breathMs))
    }
  }
  const lanes = Promise.all([lane(me), lane(list), lane(signUp), lane(assign, 100)])
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

  await sleep(600)
  phase = 'restarting'
  await server.restart()
  await sleep(400)
  await server.stop()
  phase = 'stopped'
  await sleep(1500)
  phase = 'starting'
  await server.start()
  const recovered = await until(async () => (await fetch(`${base}/v1/containers`, { headers: reader.headers })).status === 200, 10_000)
  phase = 'after'
  await sleep(800)
  traffic.abort()
  await lanes

  t.ok(recovered, 'requests succeed again once PostgreSQL is back, without restarting the app')
  const ok = (o: Outcome) => o.status >= 200 && o.status < 300
  // The requests that started and ended in a phase.
  const of = (p: Phase) => outcomes.filter((o) => o.phase === p && o.ended === p)
  t.ok(of('before').length > 0, 'requests flowed before the restart')
  t.same(of('before').filter((o) => !ok(o)), [], 'before: every request succeeds')
  t.ok(['me', 'listContainers', 'signUp', 'assign'].every((op) => of('after').some((o) => o.op === op)), 'reads and writes flowed after the recovery')
  t.same(of('after').filter((o) => !ok(o)), [], 'after: every request succeeds')
  const unavailable = outcomes.filter((o) => o.status === 503)
  t.ok(of('stopped').length > 0, 'requests flowed while it was stopped')
  t.same(of('stopped').filter((o) => o.op !== 'me' && o.status !== 503), [], 'while it is stopped, what needs the database is 503')
  t.ok(unavailable.length > 0, `${unavailable.length} answers were 503`)
  t.same(outcomes.filter((o) => !ok(o) && o.status !== 503), [], 'no answer other than 2xx and 503: no 500, no hang')
  t.same(unavailable.filter((o) => !o.type.startsWith('application/problem+json') || o.code !== 'unavailable' || !/^[1-9]\d*$/.test(o.retryAfter ?? '')), [],
    'every 503 is an `unavailable` problem with Retry-After in seconds')
  const slowest = Math.max(...outcomes.map((o) => o.ms))
  t.ok(slowest < boundMs, `the slowest answer took ${Math.round(slowest)} ms`)

  // A client that got 503 tries again with the same Idempotency-Key: exactly one container for it.
  const retried = await Promise.all(outcomes.filter((o) => o.op === 'assign' && o.status === 503).map(async (o) => {
    const { user, key } = keys.get(o.ref)!
    return (await app.inject({ method: 'POST', url: '/v1/containers', headers: { ...user.headers, 'idempotency-key': key }, payload: { app: offer.app } })).statusCode
  }))
  t.same(retried.filter((status) => status !== 202), [], `the ${retried.length} assignments answered 503 are accepted when retried with their key`)
  const assigned = [...keys.values()].map((k) => k.user.account.id)
  const containers = await app.db.selectFrom('container').select(['id', 'user_id', 'start_job_id']).where('app_id', '=', offer.app).execute()
  t.same(containers.map((c) => c.user_id).sort(), [...assigned].sort(), 'one container per user who asked, none for anyone else')

  // The invariants of the schema's writes, checked in SQL.
  const orphanAccounts = await app.db.selectFrom('account').select('email').where('email', 'like', 'pgfault-new-%')
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('email_token').select('token_hash').whereRef('email_token.account_id', '=', 'account.id').where('purpose', '=', 'verify_email'))))
    .execute()
  t.same(orphanAccounts, [], 'every new account has its verification token')
  const unaudited = await app.db.selectFrom('account').select('email').where('email', 'like', 'pgfault-new-%')
    .where(({ not, exists, selectFrom }) => not(exists(selectFrom('audit_event').select('id').where('action', '=', 'account.sign_up').whereRef('audit_event.target_id', '=', sql`account.id::text`))))
    .execute()
  t.same(unaudited, [], 'every new account has its sign-up audit event')
  const created = outcomes.filter((o) => o.op === 'signUp' && ok(o)).map((o) => o.ref)
  const stored = new Set((await app.db.selectFrom('account').select('email').where('email', 'like', 'pgfault-new-%').execute()).map((a) => a.email))
  t.same(created.filter((email) => !stored.has(email)), [], 'every sign-up answered 201 is stored')
  const jobless = await app.db.selectFrom('container').leftJoin('job', 'job.id', 'container.start_job_id').select('container.id')
    .where('container.app_id', '=', offer.app).where((eb) => eb.or([eb('job.id', 'is', null), eb('job.kind', '!=', 'start_container')])).execute()
  t.same(jobless, [], 'every container has its start job')
  const counts = await app.queue.counts('containers')
  const parked = await app.db.selectFrom('job').select('id').where('kind', '=', 'start_container').where('needs_enqueue', '=', true).execute()
  t.equal(counts.waiting + parked.length, containers.length, 'every start job is queued (or marked for the reaper): none lost')
})
