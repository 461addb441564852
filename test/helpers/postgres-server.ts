// A PostgreSQL 15 cluster of a test's own (initdb in a temporary directory, a free port), so it can be
// stopped and restarted without touching the shared server. initdb and postgres refuse to run as root:
// as root (CI) they run as the `postgres` OS user through runuser. `postgresUnavailable` says why a test
// cannot have one (false when it can).
import { execFile, spawnSync } from 'node:child_process'
import { chownSync, existsSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { freePort } from './redis-server.js'

const run = promisify(execFile)
const bin = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin'
const isRoot = process.getuid?.() === 0

function osUser (name: string): { uid: number, gid: number } | null {
  const out = spawnSync('id', ['-u', name], { encoding: 'utf8' })
  const gid = spawnSync('id', ['-g', name], { encoding: 'utf8' })
  return out.status === 0 && gid.status === 0 ? { uid: Number(out.stdout.trim()), gid: Number(gid.stdout.trim()) } : null
}

const postgresUser = isRoot ? osUser('postgres') : null

function why (): string | false {
  if (!existsSync(join(bin, 'initdb')) || !existsSync(join(bin, 'pg_ctl'))) return `PostgreSQL 15 server binaries are not in ${bin} (apt-get install postgresql-15, or set PG_BIN)`
  if (isRoot && !postgresUser) return 'running as root and there is no `postgres` OS user to run initdb as'
  if (isRoot && spawnSync('runuser', ['-u', 'postgres', '--', 'true']).status !== 0) return 'running as root and `runuser -u postgres` does not work here'
  return false
}

export const postgresUnavailable: string | false = why()

export interface PostgresServer {
  /** postgres:// URL of the `postgres` database (user postgres, trust). */
  readonly url: string
  readonly port: number
  /** `pg_ctl restart -m fast`: every session is ended (57P01), the server comes back on the same port. */
  restart (): Promise<void>
  /** `pg_ctl stop -m fast`: connections are refused until start(). */
  stop (): Promise<void>
  start (): Promise<void>
  /** Stops it (immediate) and removes its directory; safe to call twice. */
  destroy (): Promise<void>
}

/** initdb + pg_ctl start on a free port (fsync off: a test cluster never outlives its test). */
export async function startPostgres (): Promise<PostgresServer> {
  if (postgresUnavailable) throw new Error(postgresUnavailable)
  const dir = mkdtempSync(join(tmpdir(), 'fractal-pg-'))
  if (postgresUser) chownSync(dir, postgresUser.uid, postgresUser.gid)
  const data = join(dir, 'data')
  const port = await freePort()
  const as = (cmd: string, args: string[]) => isRoot ? run('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args]) : run(join(bin, cmd), args)
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`
  const pgctl = (...args: string[]) => as('pg_ctl', ['-D', data, '-l', join(dir, 'log'), ...args])
  let destroyed = false
  try {
    await as('initdb', ['-D', data, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8', '--locale=C'])
    await pgctl('start', '-w', '-t', '30', '-o', options)
  } catch (err) {
    rmSync(dir, { recursive: true, force: true })
    throw err
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    port,
    async restart () { await pgctl('restart', '-w', '-t', '30', '-m', 'fast', '-o', options) },
    async stop () { await pgctl('stop', '-w', '-t', '30', '-m', 'fast') },
    async start () { await pgctl('start', '-w', '-t', '30', '-o', options) },
    async destroy () {
      if (destroyed) return
      destroyed = true
      await pgctl('stop', '-w', '-t', '30', '-m', 'immediate').catch(() => {})
      rmSync(dir, { recursive: true, force: true })
    }
  }
}
