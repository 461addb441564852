import { readFileSync } from 'node:fs'
import t from 'tap'
import { EnvSchema, embeddedDefaults, loadConfig } from '../../plugins/config.js'
import { buildApp } from '../../app.js'
import { awsSettings, testInstanceProfile } from '../helpers/aws.js'

t.test('config › every bad variable is named in one message', async (t) => {
  t.throws(() => loadConfig({ PORT: '70000', DATABASE_URL: 'mysql://db', LOG_LEVEL: 'loud', REDIS_URL: 'localhost' }), {
    message: /^invalid configuration: .*PORT must be <= 65535.*LOG_LEVEL must be equal to one of the allowed values.*DATABASE_URL must match pattern.*REDIS_URL must match pattern/
  })
})

t.test('config › the result is nested, typed and frozen', async (t) => {
  const config = loadConfig({ PORT: '8080', CORS_ORIGINS: 'https://a.test, https://b.test', NODE_ENV: 'production', JWT_PRIVATE_KEY: 'x' })
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
  t.equal(used.length, 4)
  t.match(used.join('\n'), /PGlite.*in-process queue.*mail written to the log.*generated ES256 key pair/s)
})

t.test('config › production without a signing key stops start-up', async (t) => {
  const config = loadConfig({ NODE_ENV: 'production', DATABASE_URL: 'postgres://postgres@127.0.0.1:1/none', LOG_LEVEL: 'silent' })
  await t.rejects(buildApp(config, { logger: false }), /auth: JWT_PRIVATE_KEY is required in production/)
})

t.test('config › every variable is in the README\'s configuration table with its default', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    // A row's first cell names one variable or several (`A` / `B`), its second their defaults.
    const row = readme.split('\n').find((line) => line.startsWith('| ') && line.split(' | ')[0]!.includes(`\`${name}\``))
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

t.test('config › every setting CLOUD_PROVIDER=aws asks for is a variable of the schema with a README row', async (t) => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8')
  const message = (() => { try { loadConfig({ CLOUD_PROVIDER: 'aws', HOST_HANDSHAKE: 'bootstrap-secret' }) } catch (err) { return (err as Error).message } return '' })()
  const named = [...new Set([...message.matchAll(/\b[A-Z][A-Z0-9_]{3,}\b/g)].map((m) => m[0]).filter((name) => name !== 'CLOUD_PROVIDER'))]
  t.ok(named.length >= 5, named.join(' '))
  for (const name of named) {
    t.ok(name in EnvSchema.properties, `${name} is a variable`)
    t.ok(readme.split('\n').some((line) => line.startsWith('| ') && line.split(' | ')[0]!.includes(`\`${name}\``)), `${name} has a README row`)
  }
})
