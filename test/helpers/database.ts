import { randomBytes } from 'node:crypto'
import type { Kysely } from 'kysely'
import pg from 'pg'
import { createDatabase } from '../../db/database.js'
import type { DB } from '../../db/types.js'
import { databaseUrl, templateName, urlFor } from './env.js'

/** A fresh database cloned from the migrated template: `CREATE DATABASE … TEMPLATE …`, milliseconds. */
export async function createTestDatabase (): Promise<{ name: string, url: string, drop (): Promise<void> }> {
  const name = `fractal_test_${Date.now()}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`create database "${name}" template "${templateName()}"`)
    // A test database need not survive a crash of the server: commits do not wait for the WAL to reach the
    // disk (the same answers, much less waiting on fsync on a shared machine).
    await admin.query(`alter database "${name}" set synchronous_commit = off`)
  } finally {
    await admin.end()
  }
  return {
    name,
    url: urlFor(name),
    async drop () {
      const client = new pg.Client({ connectionString: databaseUrl })
      await client.connect()
      try {
        await client.query(`drop database if exists "${name}" with (force)`)
      } finally {
        await client.end()
      }
    }
  }
}

/**
 * A database of its own, empty (no template): as `npm run db:migrate` meets a fresh one. Its connections are
 * closed and it is dropped when the test ends.
 */
export async function emptyTestDatabase (t: { teardown (fn: () => unknown): void }, poolMax = 2): Promise<Kysely<DB>> {
  const name = `fractal_test_${Date.now()}_empty${randomBytes(3).toString('hex')}`
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`create database "${name}"`)
  } finally {
    await admin.end()
  }
  t.teardown(async () => {
    const c = new pg.Client({ connectionString: databaseUrl })
    await c.connect()
    await c.query(`drop database if exists "${name}" with (force)`)
    await c.end()
  })
  const { db } = await createDatabase({ url: urlFor(name), dataDir: '', poolMax })
  t.teardown(() => db.destroy())
  return db
}
