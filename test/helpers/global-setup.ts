// Runs once before the test files: migrates a template database that every file clones.
import pg from 'pg'
import { createDatabase } from '../../db/database.js'
import { migrateToLatest } from '../../db/migrator.js'
import { databaseUrl, templateName, urlFor } from './env.js'

const template = templateName()
const admin = new pg.Client({ connectionString: databaseUrl })
await admin.connect()
try {
  // Several runs may start together (a developer and CI): an advisory lock lets one build the template.
  await admin.query('select pg_advisory_lock(727274)')
  const { rowCount } = await admin.query('select 1 from pg_database where datname = $1', [template])
  if (!rowCount) {
    await admin.query(`create database "${template}_building"`)
    const { db } = await createDatabase({ url: urlFor(`${template}_building`), dataDir: '', poolMax: 1 })
    await migrateToLatest(db)
    await db.destroy()
    await admin.query(`alter database "${template}_building" rename to "${template}"`)
  }
  // Databases of files that crashed before their teardown, older than an hour.
  const { rows } = await admin.query<{ datname: string }>(
    "select datname from pg_database where datname like 'fractal_test_%' and split_part(datname, '_', 3)::bigint < $1",
    [Date.now() - 3600_000])
  for (const { datname } of rows) await admin.query(`drop database if exists "${datname}" with (force)`)
} finally {
  await admin.query('select pg_advisory_unlock(727274)')
  await admin.end()
}
