// npm run db:seed: fills (or refreshes) the catalog in DATABASE_URL or the embedded PGlite.
import { loadConfig } from '../plugins/config.js'
import { createDatabase } from './database.js'
import { migrateToLatest } from './migrator.js'
import { seedCatalog } from './seed.js'

const config = loadConfig()
const { db, kind } = await createDatabase({ ...config.db, dataDir: config.dataDir, baseline: true }).catch((err: Error) => {
  console.error(`db:seed: ${err.message}`)
  process.exit(1)
})
try {
  await migrateToLatest(db, (line) => console.log(line))
  // New offers get these warm-pool targets; existing ones keep theirs.
  const counts = await seedCatalog(db, { warmPools: config.db.seedWarmPools })
  console.log(`${kind}: seeded ${counts.regions} regions and ${counts.apps} apps`)
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await db.destroy()
}
