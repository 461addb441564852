import { readFileSync, unlinkSync } from 'node:fs'
import { open, readFile, unlink } from 'node:fs/promises'

/**
 * PGlite is one process's database: a second process opening the same directory (`npm run admin:create`
 * while `npm start` runs) works on its own copy of the pages, and what it writes is lost or corrupts the
 * other's (issue 20). So the directory is locked: `<dir>.lock` holds the holder's pid; a lock whose process
 * is gone (killed, crashed) is stale and taken over.
 */
export class DataDirInUse extends Error {
  constructor (readonly dir: string, readonly pid: number, readonly lockFile: string) {
    super(`the embedded database ${dir} is in use by process ${pid} (npm start?); PGlite serves one process at a time. ` +
      `Stop that process and try again, or run both against PostgreSQL (DATABASE_URL). If no such process runs, delete ${lockFile}.`)
    this.name = 'DataDirInUse'
  }
}

function alive (pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    // EPERM: it exists, and belongs to someone else.
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** Takes the lock of `dir` for this process; answers its release (also done if the process exits first). */
export async function lockDataDir (dir: string): Promise<() => Promise<void>> {
  const lockFile = `${dir}.lock`
  for (let attempt = 0; ; attempt++) {
    try {
      const handle = await open(lockFile, 'wx', 0o644)
      await handle.writeFile(`${process.pid}\n`)
      await handle.close()
      break
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number.parseInt(await readFile(lockFile, 'utf8').catch(() => ''), 10)
      // A holder that is alive (this very process included: a second PGlite on one directory is as bad).
      if (Number.isInteger(pid) && pid > 0 && alive(pid)) throw new DataDirInUse(dir, pid, lockFile)
      // Stale (its process is gone) or half-written: taken over, once; a race lost twice is a live holder.
      if (attempt > 0) throw new DataDirInUse(dir, pid, lockFile)
      await unlink(lockFile).catch(() => {})
    }
  }
  const onExit = () => { if (ownLock(lockFile)) unlinkSync(lockFile) }
  process.once('exit', onExit)
  return async () => {
    process.removeListener('exit', onExit)
    if (ownLock(lockFile)) await unlink(lockFile).catch(() => {})
  }
}

function ownLock (lockFile: string): boolean {
  try {
    return Number.parseInt(readFileSync(lockFile, 'utf8'), 10) === process.pid
  } catch {
    return false
  }
}
