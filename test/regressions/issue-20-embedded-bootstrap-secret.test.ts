// Issue 20: a host handshake needs HOST_BOOTSTRAP_SECRET (or an AWS identity document), which embedded mode did
// not set, so a new user could not try the host agent's calls at all. In development a secret is now
// generated in DATA_DIR, kept, and printed at start; production still has none it was not given.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t, { type Test } from 'tap'
import { buildApp } from '../../app.js'
import { testConfig, type Overrides } from '../helpers/build.js'

async function appWithLogs (t: Test, overrides: Overrides) {
  const lines: Array<{ msg: string, level: number }> = []
  const app = await buildApp(await testConfig(t, { LOG_LEVEL: 'info', ...overrides }), { logger: { stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines }
}

const announced = (lines: Array<{ msg: string }>) => lines.find((l) => l.msg.startsWith('EMBEDDED ONLY (no HOST_BOOTSTRAP_SECRET)'))

t.test('hostHandshake › valid › embedded mode prints a generated bootstrap secret that a handshake and heartbeat work with', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-bootstrap-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const { app, lines } = await appWithLogs(t, { NODE_ENV: 'development', DATA_DIR: dataDir })
  const line = announced(lines)
  t.ok(line, 'the secret is printed at start, marked embedded-only')
  const secret = /bootstrap secret (\S+) /.exec(line!.msg)![1]!

  const region = (await app.db.selectFrom('region').select('code').where('enabled', '=', true).executeTakeFirstOrThrow()).code
  const handshake = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: { instanceId: 'i-0123456789abcdef0', region, ip: '198.51.100.20', bootstrapSecret: secret } })
  t.equal(handshake.statusCode, 201)
  const { hostId, secret: hostSecret } = handshake.json()
  const heartbeat = await app.inject({ method: 'POST', url: `/v1/hosts/${hostId}/heartbeats`, headers: { 'x-host-secret': hostSecret }, payload: { totalMemoryKb: 16337000, freeMemoryKb: 9120000, availableMemoryKb: 12000000, dying: false } })
  t.equal(heartbeat.statusCode, 204)

  await app.close()
  const again = await appWithLogs(t, { NODE_ENV: 'development', DATA_DIR: dataDir })
  t.match(announced(again.lines)?.msg, secret, 'the same secret after a restart')
})

t.test('hostHandshake › permissions › production generates no bootstrap secret: a bootstrap handshake is refused', async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-bootstrap-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const { app, lines } = await appWithLogs(t, { NODE_ENV: 'production', CLOUD_PROVIDER: 'simulated', DATA_DIR: dataDir })
  t.notOk(announced(lines), 'no secret announced')
  const res = await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: { instanceId: 'i-0123456789abcdef0', region: 'us-east-1', bootstrapSecret: 'embedded-guess-0123456789abcdef' } })
  t.equal(res.statusCode, 401)
  t.match(res.json().detail, /HOST_BOOTSTRAP_SECRET is not set/)
})
