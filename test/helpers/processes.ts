// server.ts and worker.ts as an operator runs them: child processes (node --import tsx), with an
// environment of their own, their output kept for assertions, and killed (SIGKILL) when the test ends
// whatever happened, so a failing test never leaves one behind.
import { spawn, type ChildProcess } from 'node:child_process'
import type { Config } from '../../plugins/config.js'
import { testKeys } from './build.js'
import { until } from './wait.js'

type Test = { teardown (fn: () => unknown): void }

const root = new URL('../..', import.meta.url).pathname

export interface RunningProcess {
  readonly child: ChildProcess
  readonly pid: number
  /** Everything it wrote so far (stdout and stderr). */
  output (): string
  /** Resolves once the output matches (false after `ms`, or when the process exited without it). */
  waitFor (pattern: RegExp, ms?: number): Promise<boolean>
  /** Resolves with the exit code (or the signal's name) once it exited. */
  readonly exited: Promise<number | string>
  /** Whether it has exited. */
  hasExited (): boolean
}

/**
 * The environment of a process that shares a test app's database, Redis prefix and JWT keys (so tokens
 * made in the test are good there), with logs on for `waitFor`; `extra` adds or overrides variables.
 * NODE_ENV is production, as an operator runs it (test mode also checks every response against the
 * spec, which costs seconds of start-up on a busy machine).
 */
export function entryEnv (config: Config, extra: Record<string, string> = {}): Record<string, string> {
  return {
    NODE_ENV: 'production',
    LOG_LEVEL: 'info',
    DATABASE_URL: config.db.url!,
    DATABASE_AUTO_MIGRATE: 'false',
    REDIS_URL: config.redis.url!,
    REDIS_PREFIX: config.redis.prefix,
    // Production names its cloud; the simulated one unless a test brings the AWS stand-ins.
    CLOUD_PROVIDER: 'simulated',
    JWT_PRIVATE_KEY: testKeys.privateKey,
    JWT_PUBLIC_KEY: testKeys.publicKey,
    // The schedules stay out of the way unless a test wants them.
    WARM_POOL_INTERVAL_MS: '600000',
    REAP_INTERVAL_MS: '600000',
    HOSTS_REAP_INTERVAL_MS: '600000',
    FLEET_SCALING_INTERVAL_MS: '600000',
    CLUSTER_USAGE_INTERVAL_MS: '600000',
    LOG_SPOOL_INTERVAL_MS: '600000',
    ...extra
  }
}

/** Starts `script` (server.ts or worker.ts) with exactly `env` (plus PATH); SIGKILLed at teardown. */
export function runEntry (t: Test, script: 'server.ts' | 'worker.ts', env: Record<string, string>, args: string[] = []): RunningProcess {
  const child = spawn(process.execPath, ['--import', 'tsx', script, ...args], {
    cwd: root,
    env: { PATH: process.env.PATH!, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  let done = false
  child.stdout!.on('data', (d) => { output += d })
  child.stderr!.on('data', (d) => { output += d })
  const exited = new Promise<number | string>((resolve) => {
    child.on('exit', (code, signal) => { done = true; resolve(code ?? signal ?? 'unknown') })
  })
  t.teardown(() => { if (!done) child.kill('SIGKILL') })
  return {
    child,
    pid: child.pid!,
    output: () => output,
    async waitFor (pattern, ms = 60_000) {
      return until(() => pattern.test(output) || done, ms).then(() => pattern.test(output))
    },
    exited,
    hasExited: () => done
  }
}
