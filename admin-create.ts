// npm run admin:create -- someone@example.com ["Their Name"]: makes the address an admin (the only way to
// get the first one). A new account has no password: its owner sets one through the password-reset mail.
import { loadConfig } from './plugins/config.js'
import { createDatabase } from './db/database.js'
import { migrateToLatest } from './db/migrator.js'
import { ensureAdmin } from './services/accounts/accounts.service.js'

const [email, name] = process.argv.slice(2)
if (!email || !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) {
  console.error('usage: npm run admin:create -- <email> ["Display Name"]')
  process.exit(2)
}
const config = loadConfig()
// With the embedded database, refused while `npm start` holds it (db/data-dir-lock.ts): the write would be lost.
const { db } = await createDatabase({ ...config.db, dataDir: config.dataDir, baseline: config.db.autoMigrate }).catch((err: Error) => {
  console.error(`admin:create: ${err.message}`)
  process.exit(1)
})
try {
  if (config.db.autoMigrate) await migrateToLatest(db)
  const { account, created } = await ensureAdmin(db, email, name ?? email.split('@')[0]!)
  console.log(created
    ? `created admin ${account.email} (${account.id}); set a password with POST /v1/accounts/password-reset`
    : `${account.email} (${account.id}) is now an admin`)
} catch (err) {
  console.error((err as Error).message)
  process.exitCode = 1
} finally {
  await db.destroy()
}
