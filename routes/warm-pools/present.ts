import type { WarmPoolSchedule } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'
import type { PoolStatus } from '../../services/containers/containers.warm-pools.js'

type Schemas = components['schemas']

const hhmm = (minutes: number) => `${String(Math.floor(minutes / 60)).padStart(2, '0')}:${String(minutes % 60).padStart(2, '0')}`

export function presentSchedule (row: WarmPoolSchedule): Schemas['WarmPoolSchedule'] {
  return {
    id: row.id,
    name: row.name,
    days: row.days,
    start: hhmm(row.start_minute),
    end: hhmm(row.end_minute),
    timeZone: row.time_zone,
    desired: row.desired,
    createdAt: row.created_at.toISOString()
  }
}

export function presentPool (pool: PoolStatus): Schemas['WarmPoolCapacity'] {
  return {
    app: pool.app,
    region: pool.region,
    target: pool.target,
    desired: pool.desired,
    available: pool.available,
    ready: pool.available,
    starting: pool.starting,
    inUse: pool.inUse,
    failing: pool.failing,
    paused: pool.paused,
    pausedAt: pool.pausedAt?.toISOString() ?? null,
    maxAgeSeconds: pool.maxAgeSeconds,
    effectiveMaxAgeSeconds: pool.effectiveMaxAgeSeconds,
    replacing: pool.expired,
    recycleBefore: pool.recycleBefore?.toISOString() ?? null,
    schedule: pool.schedule ? presentSchedule(pool.schedule) : null,
    lastPass: pool.lastPass ? { ...pool.lastPass, at: pool.lastPass.at.toISOString() } : null
  }
}
