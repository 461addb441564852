import type { Kysely } from 'kysely'
import type { DB, Region } from '../../db/types.js'
import type { CacheInvalidator } from '../cache/cache.js'
import { decodeCursor, pageOf } from '../pagination.js'
import { AppNotFound, RegionNotFound } from './catalog.errors.js'
import * as repo from './catalog.repository.js'

export type { AppWithRegions } from './catalog.repository.js'

export function listRegions (db: Kysely<DB>): Promise<Region[]> {
  return repo.listRegions(db)
}

const appId = /^[a-z0-9][a-z0-9-]{0,39}$/
const afterApp = (cursor: string) => decodeCursor(cursor, (parts) => parts.length === 1 && appId.test(parts[0]!) ? parts[0] : undefined)

/** One page of the catalog, by id; `nextCursor` is null on the last page. */
export async function listApps (db: Kysely<DB>, query: { limit: number, cursor?: string, region?: string }) {
  const region = query.region ?? null
  if (region !== null && !(await repo.findRegion(db, region))) throw new RegionNotFound(region)
  // One row more than asked tells whether a next page exists.
  const rows = await repo.listApps(db, { limit: query.limit + 1, afterId: query.cursor ? afterApp(query.cursor) : null, region })
  return pageOf(rows, query.limit, (app) => [app.id])
}

export async function getApp (db: Kysely<DB>, id: string) {
  const app = await repo.findApp(db, id)
  if (!app) throw new AppNotFound(id)
  return app
}

/** Changes a region and asks the edge to forget region and app reads once the change is committed. */
export async function updateRegion (db: Kysely<DB>, deps: { cache: CacheInvalidator }, code: string, changes: { enabled?: boolean, name?: string }) {
  const region = await repo.updateRegion(db, code, changes)
  if (!region) throw new RegionNotFound(code)
  // Region names, which apps are offered where, and the service status all change with a region.
  await deps.cache.invalidate(['regions', 'apps', 'status'])
  return region
}
