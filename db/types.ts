// Row shapes of every table, as kysely sees them. Generated<T> marks columns with a database default.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface RegionTable {
  code: string
  name: string
  enabled: Generated<boolean>
  latitude: number
  longitude: number
  current_ami: string | null
  sort_order: Generated<number>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface AppTable {
  id: string
  name: string
  description: string
  icon_url: string
  category: string
  created_at: Timestamp
  updated_at: Timestamp
}

export interface AppRegionTable {
  app_id: string
  region_code: string
  task_definition: string
  warm_pool_target: Generated<number>
}

export interface DB {
  region: RegionTable
  app: AppTable
  app_region: AppRegionTable
}

export type Region = Selectable<RegionTable>
export type NewRegion = Insertable<RegionTable>
export type RegionUpdate = Updateable<RegionTable>
export type App = Selectable<AppTable>
export type NewApp = Insertable<AppTable>
export type AppRegion = Selectable<AppRegionTable>
