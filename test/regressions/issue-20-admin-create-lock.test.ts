// Issue 20: `npm run admin:create` while `npm start` ran on embedded PGlite printed "created admin …", but the
// server never saw the account, and the next sign-up failed on a duplicate audit id: two processes had the
// same data directory open. The directory is now locked by its holder's pid (db/data-dir-lock.ts).
import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { sql } from '../../db/kysely.js'
import t, { type Test } from 'tap'
import { DataDirInUse } from '../../db/data-dir-lock.js'
import { createDatabase } from '../../db/database.js'

const root = new URL('../..', import.meta.url).pathname

function freshDataDir (t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'fractal-lock-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  mkdirSync(join(dir, 'pglite'))
  return dir
}

/** A process that stays alive until the test ends: the "server" holding the directory. */
function holder (t: Test): number {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' })
  t.teardown(() => { child.kill('SIGKILL') })
  return child.pid!
}

/** The pid of a process that has exited: what a killed `npm start` leaves in its lock. */
async function deadPid (): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
  await new Promise((resolve) => child.on('exit', resolve))
  return child.pid!
}

t.test('admin:create › refuses, naming the holder, while another process holds the embedded database; writes nothing', async (t) => {
  const dataDir = freshDataDir(t)
  const pid = holder(t)
  writeFileSync(join(dataDir, 'pglite.lock'), `${pid}\n`)
  const child = spawn(process.execPath, ['--import', 'tsx', 'admin-create.ts', 'ops@example.com'], {
    cwd: root,
    env: { PATH: process.env.PATH, NODE_ENV: 'development', DATA_DIR: dataDir, LOG_LEVEL: 'silent' },
    stdio: ['ignore', 'pipe', 'pipe']
  })
  let output = ''
  child.stdout.on('data', (chunk) => { output += chunk })
  child.stderr.on('data', (chunk) => { output += chunk })
  const code = await new Promise((resolve) => child.on('exit', resolve))
  t.equal(code, 1)
  t.match(output, `in use by process ${pid}`)
  t.match(output, /Stop that process and try again/)
  t.notMatch(output, /created admin/)
  t.notOk(existsSync(join(dataDir, 'pglite', 'PG_VERSION')), 'the database was not even opened')
  t.equal(readFileSync(join(dataDir, 'pglite.lock'), 'utf8'), `${pid}\n`, 'the holder keeps its lock')
})

t.test('embedded database › a lock whose process is gone is taken over, and released on close', async (t) => {
  const dataDir = freshDataDir(t)
  const lock = join(dataDir, 'pglite.lock')
  writeFileSync(lock, `${await deadPid()}\n`)
  const { db } = await createDatabase({ url: null, dataDir, poolMax: 1, baseline: true })
  t.equal(readFileSync(lock, 'utf8'), `${process.pid}\n`, 'this process holds it now')
  await sql`select 1`.execute(db)

  // The same directory a second time, in this very process, is refused as well.
  await t.rejects(createDatabase({ url: null, dataDir, poolMax: 1, baseline: true }), DataDirInUse)

  await db.destroy()
  t.notOk(existsSync(lock), 'released on close')
  const again = await createDatabase({ url: null, dataDir, poolMax: 1, baseline: true })
  t.equal(again.started?.from, 'existing')
  await sql`select 1`.execute(again.db)
  await again.db.destroy()
})
