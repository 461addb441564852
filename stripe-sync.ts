// npm run stripe:sync: creates or updates, in Stripe, the product and price of every plan of db/plans.json
// (and the container-hours meter for plans billed by the hour), then maps each plan to its price in the
// database. Safe to run again: products have fixed ids, prices are found by their lookup keys.
import Stripe from 'stripe'
import { createDatabase } from './db/database.js'
import { migrateToLatest } from './db/migrator.js'
import { readPlansFile } from './db/plans.js'
import { loadConfig } from './plugins/config.js'
import { syncPlansWithStripe } from './services/billing/billing.service.js'

const config = loadConfig()
if (!config.billing.stripeSecretKey) {
  console.error('stripe:sync needs STRIPE_SECRET_KEY')
  process.exit(2)
}
const api = config.billing.stripeApiUrl ? new URL(config.billing.stripeApiUrl) : null
const stripe = new Stripe(config.billing.stripeSecretKey, api ? { host: api.hostname, port: Number(api.port || 443), protocol: api.protocol.replace(':', '') as 'http' | 'https' } : {})
const { db } = await createDatabase({ ...config.db, dataDir: config.dataDir })
try {
  if (config.db.autoMigrate) await migrateToLatest(db)
  const ids = await syncPlansWithStripe(db, stripe, await readPlansFile(), (line) => console.log(line))
  for (const [plan, { product, price }] of ids) console.log(`${plan}: product ${product}, price ${price}`)
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await db.destroy()
}
