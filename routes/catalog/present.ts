import type { components } from '../../openapi/schema.js'
import type { Region } from '../../db/types.js'
import type { AppWithRegions } from '../../services/catalog/catalog.service.js'

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
    regions: row.regions
  }
}
