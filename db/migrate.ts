// npm run db:migrate: migrates DATABASE_URL (or the embedded PGlite) to the latest version.
import { loadConfig } from '../plugins/config.js'
import { createDatabase } from './database.js'
import { migrateToLatest } from './migrator.js'

const config = loadConfig()
const { db, kind } = await createDatabase({ ...config.db, dataDir: config.dataDir, baseline: true }).catch((err: Error) => {
  console.error(`db:migrate: ${err.message}`)
  process.exit(1)
})
try {
  const result = await migrateToLatest(db, (line) => console.log(line))
  if (!result.results?.length && result.functions.length === 0) console.log(`${kind}: already at the latest version`)
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await db.destroy()
}
