import type { Kysely } from 'kysely'
import type { AppUpdate, DB, Region } from '../../db/types.js'
import { recordAudit } from '../audit/audit.service.js'
import type { CacheInvalidator } from '../cache/cache.js'
import { decodeCursor, pageOf } from '../pagination.js'
import { AppIdTaken, AppNotFound, RegionNotFound, UnknownPlans, UnknownTaskDefinition } from './catalog.errors.js'
import * as repo from './catalog.repository.js'

export type { AdminAppRow, AppWithRegions } from './catalog.repository.js'

/** What the catalog's writes need: the edge-cache purge, and the cloud's word on a task definition. */
export interface CatalogDeps {
  cache: CacheInvalidator
  /** The task definition `family[:revision]` names in a region, or null when the cloud has none (containers' provider). */
  describeTaskDefinition (region: string, taskDefinition: string): Promise<{ family: string, revision: number } | null>
}

export function listRegions (db: Kysely<DB>): Promise<Region[]> {
  return repo.listRegions(db)
}

const appId = /^[a-z0-9][a-z0-9-]{0,39}$/
const afterApp = (cursor: string) => decodeCursor(cursor, (parts) => parts.length === 1 && appId.test(parts[0]!) ? parts[0] : undefined)

/** One page of the catalog (enabled apps), by id; `nextCursor` is null on the last page. */
export async function listApps (db: Kysely<DB>, query: { limit: number, cursor?: string, region?: string }) {
  const region = query.region ?? null
  if (region !== null && !(await repo.findRegion(db, region))) throw new RegionNotFound(region)
  // One row more than asked tells whether a next page exists.
  const rows = await repo.listApps(db, { limit: query.limit + 1, afterId: query.cursor ? afterApp(query.cursor) : null, region })
  return pageOf(rows, query.limit, (app) => [app.id])
}

/** An enabled app of the catalog (a disabled one is not found, as it is not listed). */
export async function getApp (db: Kysely<DB>, id: string) {
  const app = await repo.findApp(db, id)
  if (!app) throw new AppNotFound(id)
  return app
}

/** Region names, which apps are offered where, and the service status all change with a region. */
const regionTags = ['regions', 'apps', 'status']
const appTags = (id: string) => ['apps', `app:${id}`]

/** Changes a region and asks the edge to forget region and app reads once the change is committed. Audited. */
export async function updateRegion (db: Kysely<DB>, deps: Pick<CatalogDeps, 'cache'>, actorId: string, code: string, changes: { enabled?: boolean, name?: string }) {
  const region = await db.transaction().execute(async (trx) => {
    const before = await repo.findRegion(trx, code)
    const after = await repo.updateRegion(trx, code, changes)
    if (!before || !after) throw new RegionNotFound(code)
    await recordAudit(trx, {
      action: 'region.updated',
      actorId,
      target: { type: 'region', id: code },
      details: { changes, before: { enabled: before.enabled, name: before.name } }
    })
    return after
  })
  await deps.cache.invalidate(regionTags)
  return region
}

export async function getAdminApp (db: Kysely<DB>, id: string) {
  const app = await repo.findAdminApp(db, id)
  if (!app) throw new AppNotFound(id)
  return app
}

interface AppFields {
  name?: string
  description?: string
  iconUrl?: string
  category?: string
  dpiDefault?: number
  plans?: string[]
  enabled?: boolean
}

function columnsOf (fields: AppFields): AppUpdate {
  return {
    ...(fields.name !== undefined ? { name: fields.name.trim() } : {}),
    ...(fields.description !== undefined ? { description: fields.description.trim() } : {}),
    ...(fields.iconUrl !== undefined ? { icon_url: fields.iconUrl } : {}),
    ...(fields.category !== undefined ? { category: fields.category } : {}),
    ...(fields.dpiDefault !== undefined ? { dpi_default: fields.dpiDefault } : {}),
    ...(fields.enabled !== undefined ? { enabled: fields.enabled } : {})
  }
}

async function checkPlans (db: Kysely<DB>, plans: readonly string[] | undefined) {
  const missing = plans ? await repo.missingPlans(db, plans) : []
  if (missing.length > 0) throw new UnknownPlans(missing)
}

/** Adds an app (offered nowhere until a region is set). Audited; the public app reads are purged. */
export async function createApp (db: Kysely<DB>, deps: Pick<CatalogDeps, 'cache'>, actorId: string, input: AppFields & { id: string, name: string, description: string, iconUrl: string, category: string }) {
  await db.transaction().execute(async (trx) => {
    await checkPlans(trx, input.plans)
    const columns = columnsOf(input)
    const inserted = await repo.insertApp(trx, {
      id: input.id,
      name: columns.name!,
      description: columns.description!,
      icon_url: input.iconUrl,
      category: input.category,
      ...(input.dpiDefault !== undefined ? { dpi_default: input.dpiDefault } : {}),
      ...(input.enabled !== undefined ? { enabled: input.enabled } : {})
    })
    if (!inserted) throw new AppIdTaken(input.id)
    if (input.plans) await repo.replacePlans(trx, input.id, input.plans)
    await recordAudit(trx, { action: 'app.created', actorId, target: { type: 'app', id: input.id }, details: { ...input } })
  })
  await deps.cache.invalidate(appTags(input.id))
  return getAdminApp(db, input.id)
}

/** Changes the fields given (`plans` replaces the list); `enabled: false` takes the app out of the catalog. Audited. */
export async function updateApp (db: Kysely<DB>, deps: Pick<CatalogDeps, 'cache'>, actorId: string, id: string, changes: AppFields) {
  await db.transaction().execute(async (trx) => {
    const before = await repo.lockApp(trx, id)
    if (!before) throw new AppNotFound(id)
    await checkPlans(trx, changes.plans)
    const plansBefore = changes.plans ? await repo.planIdsOf(trx, id) : undefined
    await repo.updateApp(trx, id, columnsOf(changes))
    if (changes.plans) await repo.replacePlans(trx, id, changes.plans)
    const previous = {
      name: before.name,
      description: before.description,
      iconUrl: before.icon_url,
      category: before.category,
      dpiDefault: before.dpi_default,
      enabled: before.enabled,
      plans: plansBefore
    }
    await recordAudit(trx, {
      action: changes.enabled === false && before.enabled ? 'app.disabled' : 'app.updated',
      actorId,
      target: { type: 'app', id },
      details: { changes, before: Object.fromEntries(Object.keys(changes).map((k) => [k, previous[k as keyof typeof previous]])) }
    })
  })
  await deps.cache.invalidate(appTags(id))
  return getAdminApp(db, id)
}

/**
 * Sets the task definition an app runs in a region (a pinned `family:revision`, or `family`: the latest at
 * each start) and whether it is offered there. The cloud is asked first, outside the transaction: a task
 * definition it does not have is refused. Containers in use are left alone; the warm pool takes the new
 * definition as its containers are replaced. Audited.
 */
export async function setAppRegion (
  db: Kysely<DB>, deps: CatalogDeps, actorId: string, appId: string, region: string,
  input: { taskDefinition: { family: string, revision: number | null }, enabled?: boolean }
) {
  if (!(await repo.findAdminApp(db, appId))) throw new AppNotFound(appId)
  if (!(await repo.findRegion(db, region))) throw new RegionNotFound(region)
  const { family, revision } = input.taskDefinition
  const ref = revision === null ? family : `${family}:${revision}`
  const found = await deps.describeTaskDefinition(region, ref)
  if (!found) throw new UnknownTaskDefinition(ref, region)
  await db.transaction().execute(async (trx) => {
    const before = await repo.findAppRegion(trx, appId, region)
    const enabled = input.enabled ?? true
    await repo.upsertAppRegion(trx, { app_id: appId, region_code: region, task_definition: ref, enabled })
    await repo.touchApp(trx, appId)
    await recordAudit(trx, {
      action: 'app.region_set',
      actorId,
      target: { type: 'app', id: appId },
      details: {
        region,
        taskDefinition: ref,
        // What `latest` meant when it was set, for the record.
        resolvedRevision: found.revision,
        enabled,
        before: before ? { taskDefinition: before.task_definition, enabled: before.enabled } : null
      }
    })
  })
  await deps.cache.invalidate(appTags(appId))
  return getAdminApp(db, appId)
}
