// npm run db:seed: fills (or refreshes) the catalog in DATABASE_URL or the embedded PGlite.
import { loadConfig } from '../plugins/config.js'
import { createDatabase } from './database.js'
import { migrateToLatest } from './migrator.js'
import { seedCatalog } from './seed.js'

const config = loadConfig()
const { db, kind } = await createDatabase({ ...config.db, dataDir: config.dataDir })
try {
  await migrateToLatest(db, (line) => console.log(line))
  const counts = await seedCatalog(db)
  console.log(`${kind}: seeded ${counts.regions} regions and ${counts.apps} apps`)
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await db.destroy()
}
