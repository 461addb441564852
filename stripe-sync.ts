// npm run stripe:sync: creates or updates, in Stripe, the product and price of every plan of db/plans.json
// (and the container-hours meter for plans billed by the hour), maps each plan to its price in the database,
// and purges the `plans` cache tag (every web process and the edge). Safe to run again: products have
// fixed ids, prices are found by their lookup keys.
import { buildApp } from './app.js'
import { readPlansFile } from './db/plans.js'
import { loadConfig } from './plugins/config.js'
import { syncPlansWithStripe } from './services/billing/billing.service.js'
import { createStripeClient } from './services/billing/billing.stripe.js'

const config = loadConfig()
if (!config.billing.stripeSecretKey) {
  console.error('stripe:sync needs STRIPE_SECRET_KEY')
  process.exit(2)
}
const app = await buildApp(config, { logger: false })
try {
  await app.ready()
  const ids = await syncPlansWithStripe(app.db, (await createStripeClient(config.billing))!, await readPlansFile(), (line) => console.log(line))
  for (const [plan, { product, price }] of ids) console.log(`${plan}: product ${product}, price ${price}`)
  await app.cache.invalidate(['plans'])
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await app.close()
}
