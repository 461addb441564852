// A Redis of a test's own (redis-server on a free port, no persistence), so it can be killed and restarted
// without touching the shared one. `hasRedisServer` says whether the binary is there (tests skip otherwise).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createServer, type AddressInfo } from 'node:net'
import { Redis } from 'ioredis'
import { until } from './wait.js'

export const hasRedisServer = spawnSync('redis-server', ['--version']).status === 0

export async function freePort (): Promise<number> {
  const server = createServer().listen(0, '127.0.0.1')
  await once(server, 'listening')
  const { port } = server.address() as AddressInfo
  server.close()
  await once(server, 'close')
  return port
}

/** Starts redis-server on `port` and resolves once it answers PING. */
export async function startRedis (port: number): Promise<ChildProcess> {
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' })
  const probe = new Redis(port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null })
  probe.on('error', () => {})
  const up = await until(async () => {
    try {
      if (probe.status !== 'ready') await probe.connect()
      return (await probe.ping()) === 'PONG'
    } catch { return false }
  }, 5000)
  probe.disconnect()
  if (!up) throw new Error(`redis-server did not start on port ${port}`)
  return proc
}
