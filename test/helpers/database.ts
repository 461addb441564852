import { randomBytes } from 'node:crypto'
import pg from 'pg'
import { databaseUrl, templateName, urlFor } from './env.js'

/** A fresh database cloned from the migrated template: `CREATE DATABASE … TEMPLATE …`, milliseconds. */
export async function createTestDatabase (): Promise<{ name: string, url: string, drop (): Promise<void> }> {
  const name = `fractal_test_${Date.now()}_${randomBytes(4).toString('hex')}`
  const admin = new pg.Client({ connectionString: databaseUrl })
  await admin.connect()
  try {
    await admin.query(`create database "${name}" template "${templateName()}"`)
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
