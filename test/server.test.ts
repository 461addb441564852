// The processes as an operator runs them: server.ts and worker.ts, started and stopped by signals.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildApp } from '../app.js'
import { testConfig } from './helpers/build.js'
import { runEntry } from './helpers/processes.js'
import { freePort } from './helpers/redis-server.js'
import { until } from './helpers/wait.js'

t.test('server › starts on the configured port, serves, and exits cleanly on SIGTERM', async (t) => {
  const config = await testConfig(t)
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-server-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const port = await freePort()
  const { child, output, exited } = runEntry(t, 'server.ts', {
    NODE_ENV: 'test', LOG_LEVEL: 'info', PORT: String(port), DATA_DIR: dataDir, DATABASE_URL: config.db.url!, REDIS_URL: config.redis.url!, REDIS_PREFIX: config.redis.prefix
  }, ['--with-worker'])

  t.ok(await until(() => fetch(`http://127.0.0.1:${port}/readyz`).then((r) => r.ok, () => false), 10_000), 'ready')
  const regions = await fetch(`http://127.0.0.1:${port}/v1/regions`)
  t.equal(regions.status, 200)

  child.kill('SIGTERM')
  t.equal(await exited, 0, 'exit code 0')
  t.match(output(), /closing: finishing in-flight requests and jobs/)
  t.match(output(), /worker started in this process/)
})

t.test('server › invalid configuration stops start-up with one message naming each variable', async (t) => {
  const { output, exited } = runEntry(t, 'server.ts', { PORT: 'eighty', DATABASE_URL: 'mysql://x' })
  t.not(await exited, 0)
  t.match(output(), /invalid configuration: PORT must be integer; DATABASE_URL must match pattern/)
})

t.test('worker › processes the jobs a web process enqueued, and stops on SIGTERM', async (t) => {
  const config = await testConfig(t)
  const { child, output, waitFor, exited } = runEntry(t, 'worker.ts', {
    NODE_ENV: 'test', LOG_LEVEL: 'debug', DATABASE_URL: config.db.url!, REDIS_URL: config.redis.url!, REDIS_PREFIX: config.redis.prefix
  })
  await waitFor(/worker started/, 10_000)
  t.match(output(), /"queue":"bee-queue".*worker started/)

  const web = await buildApp(config, { logger: false })
  t.teardown(() => web.close())
  await web.queue.enqueue({ family: 'cache-purge', name: 'purgeTags' }, { tags: ['apps'] }, { jobId: 'purge-from-web' })
  await waitFor(/purge-from-web.*job done/, 10_000)
  t.match(output(), /"tags":\["apps"\].*cache purge/, 'the purger got the tags')
  t.match(output(), /"job":"purge-from-web".*"name":"purgeTags".*job done/)
  child.kill('SIGTERM')
  t.equal(await exited, 0)
})
