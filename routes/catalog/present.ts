import type { components } from '../../openapi/schema.js'
import type { Region } from '../../db/types.js'
import type { AdminAppRow, AppWithRegions } from '../../services/catalog/catalog.service.js'

type Schemas = components['schemas']

export function presentRegion (row: Region): Schemas['Region'] {
  return { code: row.code, name: row.name, enabled: row.enabled, location: { latitude: row.latitude, longitude: row.longitude } }
}

export function presentApp (row: AppWithRegions): Schemas['App'] {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    iconUrl: row.icon_url,
    category: row.category as Schemas['App']['category'],
    regions: row.regions,
    plans: row.plans
  }
}

/** `family:revision` (pinned) or `family` (latest) as the API spells it. */
function taskDefinitionOf (ref: string): Schemas['TaskDefinitionRef'] {
  const at = ref.lastIndexOf(':')
  return at === -1 ? { family: ref, revision: null } : { family: ref.slice(0, at), revision: Number(ref.slice(at + 1)) }
}

export function presentAdminApp (row: AdminAppRow): Schemas['AdminApp'] {
  return {
    id: row.id,
    name: row.name,
    description: row.description,
    iconUrl: row.icon_url,
    category: row.category as Schemas['AdminApp']['category'],
    dpiDefault: row.dpi_default,
    enabled: row.enabled,
    plans: row.plans,
    regions: row.regions.map((r) => ({ region: r.region, enabled: r.enabled, taskDefinition: taskDefinitionOf(r.task_definition), warmPoolTarget: r.warm_pool_target })),
    updatedAt: row.updated_at.toISOString()
  }
}
