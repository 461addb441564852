// The processes as an operator runs them: server.ts and worker.ts, started and stopped by signals.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildApp } from '../app.js'
import { testConfig } from './helpers/build.js'

const root = new URL('..', import.meta.url).pathname

async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as { port: number }
  server.close()
  return port
}

function run (script: string, args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], { cwd: root, env: { PATH: process.env.PATH!, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let output = ''
  child.stdout.on('data', (d) => { output += d })
  child.stderr.on('data', (d) => { output += d })
  return { child, output: () => output }
}

t.test('server › starts on the configured port, serves, and exits cleanly on SIGTERM', async (t) => {
  const config = await testConfig(t)
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-server-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const port = await freePort()
  const { child, output } = run('server.ts', ['--with-worker'], {
    NODE_ENV: 'test', LOG_LEVEL: 'info', PORT: String(port), DATA_DIR: dataDir, DATABASE_URL: config.db.url!, REDIS_URL: config.redis.url!, REDIS_PREFIX: config.redis.prefix
  })
  t.teardown(() => { child.kill('SIGKILL') })

  let ready = false
  for (let i = 0; i < 200 && !ready; i++) {
    ready = await fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false)
    if (!ready) await new Promise((resolve) => setTimeout(resolve, 50))
  }
  t.ok(ready, 'ready')
  const regions = await fetch(`http://127.0.0.1:${port}/v1/regions`)
  t.equal(regions.status, 200)

  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0, 'exit code 0')
  t.match(output(), /closing: finishing in-flight requests and jobs/)
  t.match(output(), /worker started in this process/)
})

t.test('server › invalid configuration stops start-up with one message naming each variable', async (t) => {
  const { child, output } = run('server.ts', [], { PORT: 'eighty', DATABASE_URL: 'mysql://x' })
  const [code] = await once(child, 'exit')
  t.not(code, 0)
  t.match(output(), /invalid configuration: PORT must be integer; DATABASE_URL must match pattern/)
})

t.test('worker › processes the jobs a web process enqueued, and stops on SIGTERM', async (t) => {
  const config = await testConfig(t)
  const { child, output } = run('worker.ts', [], {
    NODE_ENV: 'test', LOG_LEVEL: 'debug', DATABASE_URL: config.db.url!, REDIS_URL: config.redis.url!, REDIS_PREFIX: config.redis.prefix
  })
  t.teardown(() => { child.kill('SIGKILL') })
  for (let i = 0; i < 200 && !/worker started/.test(output()); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(output(), /"queue":"bee-queue".*worker started/)

  const web = await buildApp(config, { logger: false })
  t.teardown(() => web.close())
  await web.queue.enqueue({ family: 'cache-purge', name: 'purgeTags' }, { tags: ['apps'] }, { jobId: 'purge-from-web' })
  for (let i = 0; i < 200 && !/purge-from-web.*job done/.test(output()); i++) await new Promise((resolve) => setTimeout(resolve, 50))
  t.match(output(), /"tags":\["apps"\].*cache purge/, 'the purger got the tags')
  t.match(output(), /"job":"purge-from-web".*"name":"purgeTags".*job done/)
  child.kill('SIGTERM')
  const [code] = await once(child, 'exit')
  t.equal(code, 0)
})
