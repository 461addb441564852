import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { appWithSpec } from '../helpers/app-with-spec.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { until } from '../helpers/wait.js'

// POST /v1/logs declares `x-rate-limit: { max: 60, timeWindow: 1 minute, key: [user, container] }`: a user
// counts per user, a container per container (X-Container-Id with its verified secret), whatever their
// address. Containers of one host, or of one NAT, share an address: per address they would share one budget.

type App = Awaited<ReturnType<typeof build>>
type Test = { teardown (fn: () => unknown): void }

/** Every request of this file comes from one address (the load balancer says so). */
const address = '198.51.100.23'

async function logsApp (t: Test) {
  const dataDir = await mkdtemp(join(tmpdir(), 'fractal-rl-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  return build(t, { DATA_DIR: dataDir, TRUST_PROXY: '127.0.0.1' })
}

const fromContainer = (app: App, container: { id: string, secret: string }) => app.inject({
  method: 'POST',
  url: '/v1/logs?sender=server',
  payload: 'protocol server: frame\n',
  headers: { 'content-type': 'text/plain', 'x-container-id': container.id, 'x-container-secret': container.secret, 'x-forwarded-for': address }
})
const limitOf = (app: App) => app.openapi.operations.get('uploadLog')!.rateLimit!.max
const logsOf = async (app: App, containerId: string) =>
  (await app.db.selectFrom('log_upload').select('id').where('container_id', '=', containerId).execute()).length
/** The limiter's counter of a container (the Redis store's key: route, then our key). */
const counterKey = (containerId: string) => `rl:POST/v1/logs-c:${containerId}`

t.test('rate limits › key: container › two containers behind one address each get their own budget; a user on it too', async (t) => {
  const app = await logsApp(t)
  const offer = await given(app).offer()
  const a = await given(app).warmContainer(offer)
  const b = await given(app).warmContainer(offer)
  const user = await given(app).signedIn()
  const max = limitOf(app)

  const statuses: number[] = []
  for (let i = 0; i < max; i++) statuses.push((await fromContainer(app, a)).statusCode)
  t.same([...new Set(statuses)], [202], `${max} logs of container A pass`)
  const limited = await fromContainer(app, a)
  t.equal(limited.statusCode, 429, `the ${max + 1}th of container A is limited`)
  t.match(limited.headers['content-type'], /application\/problem\+json/)
  t.equal(limited.json().code, 'rate_limited')
  t.ok(Number(limited.headers['retry-after']) > 0)
  t.equal(await logsOf(app, a.id), max, 'nothing stored past the limit')

  t.equal((await fromContainer(app, b)).statusCode, 202, 'container B, same address: its own budget')
  const client = await app.inject({
    method: 'POST', url: '/v1/logs?sender=client', payload: 'client log\n', headers: { ...user.headers, 'content-type': 'text/plain', 'x-forwarded-for': address }
  })
  t.equal(client.statusCode, 202, 'a user on the same address: its own budget')
})

t.test('rate limits › key: container › a wrong secret with a container\'s id counts against the address, never the container', async (t) => {
  const app = await logsApp(t)
  const victim = await given(app).warmContainer(await given(app).offer())
  const max = limitOf(app)
  const forged = { id: victim.id, secret: randomBytes(32).toString('base64url') }

  const refused: number[] = []
  for (let i = 0; i <= max; i++) refused.push((await fromContainer(app, forged)).statusCode)
  t.same([...new Set(refused.slice(0, max))], [401], 'forged secrets: 401')
  t.equal(refused[max], 429, 'and they spend the address\'s budget')
  t.equal(await app.redis.exists(counterKey(victim.id)), 0, 'the victim\'s counter was never touched')

  const statuses: number[] = []
  for (let i = 0; i < max; i++) statuses.push((await fromContainer(app, victim)).statusCode)
  t.same([...new Set(statuses)], [202], 'the container still has its whole budget, from the same address')
})

t.test('rate limits › key: container › past its window a limited container is let in again', async (t) => {
  const app = await logsApp(t)
  const container = await given(app).warmContainer(await given(app).offer())
  const max = limitOf(app)
  for (let i = 0; i < max; i++) await fromContainer(app, container)
  t.equal((await fromContainer(app, container)).statusCode, 429)

  // The window lives in Redis (the counter's TTL, set by the store's script on the first hit): it is what
  // a clock moved past the window would end. One minute, as the spec says; then it lapses.
  const ttl = await app.redis.pttl(counterKey(container.id))
  t.ok(ttl > 0 && ttl <= 60_000, `the counter lives for the rest of its one-minute window (${ttl} ms)`)
  await app.redis.pexpire(counterKey(container.id), 1)
  t.ok(await until(async () => await app.redis.exists(counterKey(container.id)) === 0), 'the window lapses')

  t.equal((await fromContainer(app, container)).statusCode, 202, 'a new window: let in')
  t.equal(Number(await app.redis.get(counterKey(container.id))), 1, 'counted afresh')
})

t.test('rate limits › key: container › concurrent uploads of one container never pass the limit', async (t) => {
  const app = await logsApp(t)
  const container = await given(app).warmContainer(await given(app).offer())
  const max = limitOf(app)
  const extra = 20

  const results = await Promise.all(Array.from({ length: max + extra }, () => fromContainer(app, container)))

  const count = (status: number) => results.filter((r) => r.statusCode === status).length
  t.equal(count(202), max, `${max} of ${max + extra} concurrent uploads pass`)
  t.equal(count(429), extra, 'every other one is limited')
  t.equal(await logsOf(app, container.id), max, 'and only those are stored')
})

t.test('rate limits › key › an x-rate-limit key the limiter does not know stops start-up, naming the operation', async (t) => {
  await t.rejects(appWithSpec(t, (document) => { document.paths['/v1/logs'].post['x-rate-limit'].key = ['user', 'containr'] }),
    /x-rate-limit of uploadLog has an unknown key containr/)
})
