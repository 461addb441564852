// Where the test peers are: the environment may point elsewhere, the local servers are the default.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

const migrationsDir = fileURLToPath(new URL('../../db/migrations/', import.meta.url))

/** The template's name changes with the migrations, so an old template is never reused by mistake. */
export function templateName (): string {
  const hash = createHash('sha256')
  for (const file of readdirSync(migrationsDir).sort()) hash.update(file).update(readFileSync(migrationsDir + file))
  return `fractal_tpl_${hash.digest('hex').slice(0, 12)}`
}

export function urlFor (database: string): string {
  const url = new URL(databaseUrl)
  url.pathname = `/${database}`
  return url.toString()
}
