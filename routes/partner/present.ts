import type { components } from '../../openapi/schema.js'
import type { listPartnerContainers, listPartnerUsers, partnerUsage } from '../../services/partners/partners.service.js'

type Schemas = components['schemas']
type PartnerUserRow = Awaited<ReturnType<typeof listPartnerUsers>>['items'][number]
type PartnerContainerRow = Awaited<ReturnType<typeof listPartnerContainers>>['items'][number]
type PartnerUsage = Awaited<ReturnType<typeof partnerUsage>>

export function presentPartnerUser (row: PartnerUserRow): Schemas['PartnerUser'] {
  return { id: row.id, email: row.email, name: row.name, createdAt: row.created_at.toISOString() }
}

/** A running container as a partner sees it: who, what, where, since when; no connection details. */
export function presentPartnerContainer (row: PartnerContainerRow): Schemas['PartnerContainer'] {
  return { id: row.id, user: row.user, app: row.app, region: row.region, state: row.state, startedAt: row.startedAt.toISOString() }
}

export function presentPartnerUsage (usage: PartnerUsage): Schemas['PartnerUsage'] {
  return {
    month: usage.month,
    from: usage.from.toISOString(),
    to: usage.to.toISOString(),
    totals: usage.totals,
    items: usage.items.map((u) => ({ userId: u.id, email: u.email, name: u.name, containers: u.containers, seconds: u.seconds, hours: u.hours })),
    nextCursor: usage.nextCursor
  }
}
