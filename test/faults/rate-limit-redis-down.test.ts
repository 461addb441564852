// Redis (the rate limiter's store) going away: the authentication operations, whose limit is what stops
// password guessing, fail closed (503 problem+json with Retry-After, never 429 or 500, and the handler does
// not run), every other operation keeps working, and RATE_LIMIT_FAIL_CLOSED=false lets them through instead.
import { once } from 'node:events'
import type { FastifyInstance } from 'fastify'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { freePort, hasRedisServer, startRedis } from '../helpers/redis-server.js'
import { until } from '../helpers/wait.js'

const failClosedOperations = (app: FastifyInstance) =>
  [...app.openapi.operations.values()].filter((op) => op.rateLimit?.failClosed).map((op) => op.operationId).sort()

t.test('faults › Redis down › fail-closed operations answer 503 with Retry-After, the others keep working, and config can open them', { skip: hasRedisServer ? false : 'redis-server is not installed (apt-get install redis-server)' }, async (t) => {
  const port = await freePort()
  let redis = await startRedis(port)
  t.teardown(() => { redis.kill('SIGKILL') })
  const redisUrl = `redis://127.0.0.1:${port}`
  const closed = await build(t, { REDIS_URL: redisUrl })
  const open = await build(t, { REDIS_URL: redisUrl, RATE_LIMIT_FAIL_CLOSED: 'false' })

  t.same(failClosedOperations(closed), ['confirmPasswordReset', 'hostHandshake', 'refreshSession', 'requestPasswordReset', 'signIn', 'signInWithGoogle', 'signUp', 'verifyEmail'],
    'the authentication operations are the ones marked failClosed in the spec')

  const user = await given(closed).signedIn()
  const signIn = (app: FastifyInstance, password = user.account.password) =>
    app.inject({ method: 'POST', url: '/v1/sessions', payload: { email: user.account.email, password } })
  const sessions = async () => Number((await closed.db.selectFrom('session').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

  t.equal((await signIn(closed)).statusCode, 200, 'Redis up: sign-in works')
  const before = await sessions()

  redis.kill('SIGKILL')
  await once(redis, 'exit')
  t.ok(await until(async () => (await signIn(closed)).statusCode === 503, 5000), 'the limiter notices Redis is away')

  const refused = await signIn(closed)
  t.equal(refused.statusCode, 503, 'sign-in is refused, not let through unlimited')
  t.match(refused.headers['content-type'], /^application\/problem\+json/)
  t.equal(refused.json().code, 'unavailable')
  t.match(refused.json().detail, /rate limiter/, 'refused by the limiter, before the handler')
  t.notMatch(refused.body, /redis|ECONNREFUSED|enableOfflineQueue|stack/i, 'nothing of the internals')
  t.ok(Number(refused.headers['retry-after']) > 0, 'Retry-After says when to come back')

  // Each fail-closed operation, with a body it would otherwise accept or refuse on its merits.
  for (const [operationId, payload] of Object.entries<object>({
    signUp: { email: 'new@example.test', password: 'a-long-unusual-passphrase', name: 'New' },
    signIn: { email: user.account.email, password: 'wrong-password-guess' },
    refreshSession: { refreshToken: user.refreshToken },
    requestPasswordReset: { email: user.account.email }
  })) {
    const op = closed.openapi.operations.get(operationId)!
    const res = await closed.inject({ method: op.method as 'POST', url: op.path, payload })
    t.equal(res.statusCode, 503, `${operationId} is 503`)
    t.ok(res.headers['retry-after'], `${operationId} has Retry-After`)
  }
  t.equal(await sessions(), before, 'no session was opened while the limiter was away')

  const regions = await closed.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(regions.statusCode, 200, 'a limited public read skips its limit and answers')
  const me = await closed.inject({ method: 'GET', url: '/v1/users/me', headers: user.headers })
  t.equal(me.statusCode, 200, 'a signed-in read answers')

  // signIn keeps its own failure throttle in Redis (a 503 either way); verifyEmail has nothing but its limit.
  const verify = (app: FastifyInstance) => app.inject({ method: 'POST', url: '/v1/accounts/verify-email', payload: { token: 'Xk3vQ9pL2mN8rT5wZ1yB7cD4fG6hJ0sA-uE_iO' } })
  t.equal((await verify(closed)).statusCode, 503, 'verifyEmail is closed')
  const opened = await verify(open)
  t.equal(opened.statusCode, 400, 'RATE_LIMIT_FAIL_CLOSED=false: verifyEmail goes on without its limit, to its own answer')
  t.equal(opened.json().code, 'token_invalid')

  redis = await startRedis(port)
  t.ok(await until(async () => (await signIn(closed)).statusCode === 200, 10_000), 'Redis back: sign-in works again without a restart')

  // Shutting down while Redis is away (SIGTERM during an outage) completes, without an error.
  redis.kill('SIGKILL')
  await once(redis, 'exit')
  // Without a deadline of ours (it would measure the machine): a close that waits for Redis hangs the test.
  await t.resolves(Promise.all([closed.close(), open.close()]), 'both apps close with Redis away')
})
