// Where the test peers are: the environment may point elsewhere, the local servers are the default.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export const databaseUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
export const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379'

const schemaDirs = ['../../db/migrations/', '../../db/functions/'].map((dir) => fileURLToPath(new URL(dir, import.meta.url)))

/** The template's name changes with the migrations and SQL functions, so an old template is never reused by mistake. */
export function templateName (): string {
  const hash = createHash('sha256')
  for (const dir of schemaDirs) for (const file of readdirSync(dir).sort()) hash.update(file).update(readFileSync(dir + file))
  return `fractal_tpl_${hash.digest('hex').slice(0, 12)}`
}

export function urlFor (database: string): string {
  const url = new URL(databaseUrl)
  url.pathname = `/${database}`
  return url.toString()
}
