import { readFileSync } from 'node:fs'
import { Writable } from 'node:stream'
import t from 'tap'
import { EnvSchema, embeddedDefaults, loadConfig, simulatedCloudWarning } from '../../plugins/config.js'
import { buildApp } from '../../app.js'
import { awsSettings, testInstanceProfile } from '../helpers/aws.js'
import { testConfig } from '../helpers/build.js'
import { redisUrl } from '../helpers/env.js'

// What production must name (issue 19): its database, its Redis and its cloud.
const production = { NODE_ENV: 'production', DATABASE_URL: 'postgres://db.internal/fractal', REDIS_URL: 'redis://redis.internal:6379', ...awsSettings }

t.test('config › every bad variable is named in one message', async (t) => {
  t.throws(() => loadConfig({ PORT: '70000', DATABASE_URL: 'mysql://db', LOG_LEVEL: 'loud', REDIS_URL: 'localhost' }), {
    message: /^invalid configuration: .*PORT must be <= 65535.*LOG_LEVEL must be equal to one of the allowed values.*DATABASE_URL must match pattern.*REDIS_URL must match pattern/
  })
})

t.test('config › the result is nested, typed and frozen', async (t) => {
  const config = loadConfig({ ...production, PORT: '8080', CORS_ORIGINS: 'https://a.test, https://b.test', JWT_PRIVATE_KEY: 'x' })
  t.equal(config.port, 8080)
  t.same(config.http.corsOrigins, ['https://a.test', 'https://b.test'])
  t.equal(config.db.autoMigrate, false, 'production migrates as a release step')
  t.equal(config.db.seedIfEmpty, false)
  t.ok(Object.isFrozen(config.http))
  t.throws(() => { (config.http as { bodyLimit: number }).bodyLimit = 1 })
})

t.test('config › an empty environment selects the embedded defaults and says which', async (t) => {
  const config = loadConfig({})
  t.equal(config.db.url, null)
  t.equal(config.redis.url, null)
  t.equal(config.db.autoMigrate, true)
  const used = embeddedDefaults(config)
  t.equal(used.length, 5)
  t.match(used.join('\n'), /PGlite.*in-process queue.*mail written to the log.*generated ES256 key pair/s)
})

t.test('config › production without a signing key stops start-up', async (t) => {
  const config = loadConfig({ ...production, DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', REDIS_URL: redisUrl, LOG_LEVEL: 'silent' })
  await t.rejects(buildApp(config, { logger: false }), /auth: JWT_PRIVATE_KEY is required in production/)
})

t.test('config › every variable is in the configuration table of docs/configuration.md with its default', async (t) => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    // A row's first cell names one variable or several (`A` / `B`), its second their defaults.
    const row = doc.split('\n').find((line) => line.startsWith('| ') && line.split(' | ')[0]!.includes(`\`${name}\``))
    t.ok(row, `${name} has a row`)
    const fallback = (schema as { default?: unknown }).default
    if (row && fallback !== undefined && fallback !== '') t.ok(row.includes(`\`${String(fallback)}\``), `${name}'s row gives its default ${String(fallback)}`)
  }
})

t.test('config › CLOUD_PROVIDER=aws without what hosts need stops start-up with one message naming each missing setting', async (t) => {
  t.throws(() => loadConfig({ CLOUD_PROVIDER: 'aws' }), {
    message: 'invalid configuration: CLOUD_PROVIDER=aws needs PUBLIC_URL, FLEET_INSTANCE_PROFILE, FLEET_SECURITY_GROUPS, FLEET_PUBLIC_IP, AWS_IDENTITY_CERT (HOST_HANDSHAKE=identity-document)'
  })
  t.throws(() => loadConfig({ ...awsSettings, HOST_HANDSHAKE: 'bootstrap-secret' }), { message: 'invalid configuration: CLOUD_PROVIDER=aws needs HOST_BOOTSTRAP_SECRET (HOST_HANDSHAKE=bootstrap-secret)' })
  t.throws(() => loadConfig({ ...awsSettings, PUBLIC_URL: 'http://127.0.0.1:3000' }), { message: /needs PUBLIC_URL \(one the hosts can reach, not http:\/\/127\.0\.0\.1:3000\)$/ })
  t.throws(() => loadConfig({ ...awsSettings, FLEET_SECURITY_GROUPS: ' ' }), { message: /needs FLEET_SECURITY_GROUPS$/ })
  t.throws(() => loadConfig({ ...awsSettings, FLEET_INSTANCE_PROFILE: 'not a profile' }), { message: /FLEET_INSTANCE_PROFILE must match pattern/ })
})

t.test('config › CLOUD_PROVIDER=aws with its settings loads; the simulated cloud needs none of them', async (t) => {
  const config = loadConfig({ ...awsSettings, FLEET_PUBLIC_IP: 'false' })
  t.match(config.fleet, { instanceProfile: testInstanceProfile, securityGroups: awsSettings.FLEET_SECURITY_GROUPS, publicIp: false })
  t.equal(config.hosts.handshake, 'identity-document', 'the signed identity document is the default handshake')
  t.equal(loadConfig({}).containers.provider, 'simulated')
  t.equal(loadConfig({ ...awsSettings, HOST_HANDSHAKE: 'bootstrap-secret', HOST_BOOTSTRAP_SECRET: 'a-bootstrap-secret-0123' }).hosts.handshake, 'bootstrap-secret')
})

t.test('config › every setting CLOUD_PROVIDER=aws asks for is a variable of the schema with a row in docs/configuration.md', async (t) => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')
  const message = (() => { try { loadConfig({ CLOUD_PROVIDER: 'aws', HOST_HANDSHAKE: 'bootstrap-secret' }) } catch (err) { return (err as Error).message } return '' })()
  const named = [...new Set([...message.matchAll(/\b[A-Z][A-Z0-9_]{3,}\b/g)].map((m) => m[0]).filter((name) => name !== 'CLOUD_PROVIDER'))]
  t.ok(named.length >= 5, named.join(' '))
  for (const name of named) {
    t.ok(name in EnvSchema.properties, `${name} is a variable`)
    t.ok(doc.split('\n').some((line) => line.startsWith('| ') && line.split(' | ')[0]!.includes(`\`${name}\``)), `${name} has a row`)
  }
})
// Issue 19: production silently ran PGlite, an in-process queue and the simulated cloud (fake 203.0.113.x
// addresses) when these were unset.
t.test('config › production refuses to start without DATABASE_URL, REDIS_URL and CLOUD_PROVIDER, naming every missing one in one message', async (t) => {
  t.throws(() => loadConfig({ NODE_ENV: 'production', JWT_PRIVATE_KEY: 'x' }), {
    message: /^invalid configuration: NODE_ENV=production requires DATABASE_URL \(unset: PGlite in DATA_DIR\), REDIS_URL \(unset: an in-process queue, rate-limit store and cache\), CLOUD_PROVIDER \(unset: the simulated cloud/
  })
  for (const name of ['DATABASE_URL', 'REDIS_URL', 'CLOUD_PROVIDER'] as const) {
    const env: Record<string, string | undefined> = { ...production, JWT_PRIVATE_KEY: 'x' }
    delete env[name]
    const err = t.throws(() => loadConfig(env)) as Error
    t.match(err.message, new RegExp(`^invalid configuration: NODE_ENV=production requires ${name} \\(unset: [^)]+\\)$`), `${name} alone is named`)
    t.throws(() => loadConfig({ ...env, [name]: '' }), { message: new RegExp(`requires ${name} `) }, `an empty ${name} is unset`)
  }
  t.throws(() => loadConfig({ NODE_ENV: 'production', PORT: '70000', CLOUD_PROVIDER: 'aws' }), {
    message: /^invalid configuration: PORT must be <= 65535; NODE_ENV=production requires DATABASE_URL \(.*\), REDIS_URL \(.*\)$/
  }, 'with the schema\'s complaints, in the same message')
})

t.test('config › production runs the simulated cloud only when CLOUD_PROVIDER says so; other modes keep the embedded defaults', async (t) => {
  t.equal(loadConfig({ ...production, CLOUD_PROVIDER: 'simulated' }).containers.provider, 'simulated', 'chosen on purpose')
  t.equal(loadConfig(production).containers.provider, 'aws')
  for (const mode of [undefined, 'development', 'test']) {
    const config = loadConfig(mode ? { NODE_ENV: mode } : {})
    t.equal(config.db.url, null, `${mode ?? 'no NODE_ENV'}: PGlite`)
    t.equal(config.containers.provider, 'simulated', `${mode ?? 'no NODE_ENV'}: the simulated cloud`)
  }
})

t.test('config › the simulated cloud is named by a warning at start-up whenever it is in use', async (t) => {
  const lines: Array<{ level: number, msg: string }> = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const config = await testConfig(t, { CLOUD_PROVIDER: 'simulated' })
  const app = await buildApp(config, { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  const warning = lines.find((l) => /SIMULATED CLOUD/.test(l.msg))
  t.ok(warning, 'logged')
  t.equal(warning?.level, 40, 'as a warning')
  t.match(warning?.msg, /CLOUD_PROVIDER=simulated.*203\.0\.113\.x.*CLOUD_PROVIDER=aws/)
  t.equal(simulatedCloudWarning(loadConfig(production)), null, 'nothing with a real cloud')
})
