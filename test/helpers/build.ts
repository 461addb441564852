import { generateKeyPairSync, randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import tap from 'tap'
import { buildApp, type BuildOptions } from '../../app.js'
import { loadConfig, type Config, type Env } from '../../plugins/config.js'
import { acquireTestDatabase } from './database.js'
import { redisUrl } from './env.js'
import { deleteRedisKeys } from './redis.js'

type Test = { teardown (fn: () => unknown): void }
export type Overrides = Partial<Record<keyof Env, string>>

// One key pair per test process: generating it per app would cost more than the app.
const keys = generateKeyPairSync('ec', {
  namedCurve: 'P-256',
  privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
  publicKeyEncoding: { type: 'spki', format: 'pem' }
})

/** Deletes this file's keys only (never FLUSHALL: other files run beside us). */
export async function deleteRedisPrefix (prefix: string): Promise<void> {
  await deleteRedisKeys(redisUrl, prefix)
}

/** The config of a test app: its own database and Redis prefix, silent logs, responses checked against the spec. */
export async function testConfig (t: Test, overrides: Overrides = {}): Promise<Config> {
  const database = 'DATABASE_URL' in overrides ? undefined : await acquireTestDatabase()
  // Teardowns run last-registered first: whatever the caller builds on this config is closed before.
  if (database) t.teardown(() => database.release())
  return configFor(t, database?.url, overrides)
}

function configFor (t: Test, databaseUrl: string | undefined, overrides: Overrides): Config {
  const prefix = `test:${randomBytes(6).toString('hex')}:`
  t.teardown(() => deleteRedisPrefix(prefix))
  const env: Record<string, string | undefined> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'silent',
    DATABASE_URL: databaseUrl,
    DATABASE_AUTO_MIGRATE: 'false',
    REDIS_URL: redisUrl,
    REDIS_PREFIX: prefix,
    JWT_PRIVATE_KEY: keys.privateKey,
    JWT_PUBLIC_KEY: keys.publicKey,
    // Tests write rows directly; the origin cache has its own tests (test/plugins/edge-cache.test.ts).
    ORIGIN_CACHE_TTL_MS: '0',
    // Start jobs poll the (simulated or mocked) cloud quickly; the simulator pings when its task runs.
    CONTAINER_POLL_MS: '50',
    // A simulated start takes 100 ms, not the embedded 2 s: a test that needs a slow one sets its own.
    SIMULATED_START_MS: '100',
    ...overrides
  }
  for (const [key, value] of Object.entries(env)) if (value === '') delete env[key]
  return loadConfig(env)
}

/**
 * A whole app on its own database and Redis prefix, closed when the test ends. Its database comes from the
 * file's pool (test/helpers/database.ts): emptied to the template's rows after the app is closed, for the next.
 */
export async function build (t: Test, overrides: Overrides = {}, options: Omit<BuildOptions, 'logger'> = {}): Promise<FastifyInstance> {
  const config = await testConfig(t, overrides)
  const app = await buildApp(config, { ...options, logger: false })
  t.teardown(() => app.close())
  await app.ready()
  return app
}

/** Two apps on one database and one Redis prefix, as two processes of a deployment (web and worker, two webs). */
export async function twoProcesses (t: Test, overrides: Overrides = {}): Promise<{ a: FastifyInstance, b: FastifyInstance, config: Config }> {
  const config = await testConfig(t, overrides)
  const a = await buildApp(config, { logger: false })
  const b = await buildApp(config, { logger: false })
  t.teardown(() => Promise.all([a.close(), b.close()]))
  await Promise.all([a.ready(), b.ready()])
  return { a, b, config }
}

const fileApps = new Map<string, Promise<FastifyInstance>>()
const clockIds = new WeakMap<NonNullable<BuildOptions['clock']>, number>()
let clockCount = 0

/**
 * The file's app: one per test file (and per set of overrides and clock), built on first use on its own cloned
 * database and Redis prefix, and closed when the file's tests end. Building an app and its database costs
 * 0.3–2 s, so a file builds one and its tests share it: they make their own rows (given(app) makes unique
 * ones) and never count what the whole database holds. A test that stops the app, or needs an empty
 * database, calls build(t) instead.
 */
export function fileApp (overrides: Overrides = {}, options: Pick<BuildOptions, 'clock'> = {}): Promise<FastifyInstance> {
  const clock = options.clock
  if (clock && !clockIds.has(clock)) clockIds.set(clock, ++clockCount)
  const key = JSON.stringify([overrides, clock ? clockIds.get(clock) : 0])
  let app = fileApps.get(key)
  if (!app) {
    app = build(tap, overrides, options)
    fileApps.set(key, app)
  }
  return app
}

export { keys as testKeys }
