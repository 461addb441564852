import type { components } from '../../openapi/schema.js'
import type { Region } from '../../db/types.js'
import type { AdminAppRow, AppWithRegions } from '../../services/catalog/catalog.service.js'

type Schemas = components['schemas']

export function presentRegion (row: Region): Schemas['Region'] {
  return { code: row.code, name: row.name, enabled: row.enabled, location: { latitude: row.latitude, longitude: row.longitude } }
}

/** What the public and the operators' views of an app share. */
function appFields (row: Pick<AppWithRegions, 'id' | 'name' | 'description' | 'icon_url' | 'category' | 'plans'>) {
  return { id: row.id, name: row.name, description: row.description, iconUrl: row.icon_url, category: row.category as Schemas['App']['category'], plans: row.plans }
}

export function presentApp (row: AppWithRegions): Schemas['App'] {
  return { ...appFields(row), regions: row.regions }
}

/** `family:revision` (pinned) or `family` (latest) as the API spells it. */
function taskDefinitionOf (ref: string): Schemas['TaskDefinitionRef'] {
  const at = ref.lastIndexOf(':')
  return at === -1 ? { family: ref, revision: null } : { family: ref.slice(0, at), revision: Number(ref.slice(at + 1)) }
}

export function presentAdminApp (row: AdminAppRow): Schemas['AdminApp'] {
  return {
    ...appFields(row),
    dpiDefault: row.dpi_default,
    enabled: row.enabled,
    regions: row.regions.map((r) => ({ region: r.region, enabled: r.enabled, taskDefinition: taskDefinitionOf(r.task_definition), warmPoolTarget: r.warm_pool_target })),
    updatedAt: row.updated_at.toISOString()
  }
}
