import fp from 'fastify-plugin'
import type { CommittedWrites } from '../db/committed-writes.js'
import { createDatabase, type Database } from '../db/database.js'
import { migrateToLatest } from '../db/migrator.js'
import { seedIfEmpty } from '../db/seed.js'

declare module 'fastify' {
  interface FastifyInstance {
    db: Database
    /** Which rows of a table were updated, told once committed (the job event streams listen). */
    dbWrites: CommittedWrites
  }
}

export default fp(async function dbPlugin (app) {
  const { db, kind, writes, started } = await createDatabase({ ...app.config.db, dataDir: app.config.dataDir, baseline: app.config.db.autoMigrate })
  if (started?.from === 'baseline') app.log.info('PGlite: a fresh database, made from the migrated baseline (db/baseline)')
  if (started?.from === 'initdb') app.log.info({ reason: started.reason }, 'PGlite: a fresh database, initialised from scratch (slow: up to tens of seconds)')
  app.decorate('db', db)
  app.decorate('dbWrites', writes)
  app.addHook('onClose', async () => { await db.destroy() })
  if (app.config.db.autoMigrate) {
    await migrateToLatest(db, (line) => app.log.info(line))
  }
  if (app.config.db.seedIfEmpty && await seedIfEmpty(db, { warmPools: app.config.db.seedWarmPools })) {
    app.log.info({ warmPools: app.config.db.seedWarmPools }, 'seeded the empty catalog (DATABASE_SEED, DATABASE_SEED_WARM_POOLS)')
  }
  app.log.debug({ kind }, 'database ready')
}, { fastify: '5.x', name: 'db', dependencies: ['config'] })
