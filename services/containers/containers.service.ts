// The containers domain, in parts: assignment (containers.assignment.ts), the lifecycle of a start and a
// stop (containers.lifecycle.ts), the containers' own calls (containers.agent.ts), the host agent
// (containers.host-agent.ts), jobs as their owners read them (containers.job-status.ts) and their event
// streams (containers.job-events.ts), the queue's handlers (containers.jobs.ts) and the worker's schedules
// (containers.schedules.ts), the warm pools (containers.warm-pools.ts). Here: what they share, and reading
// and changing one's containers.
import type { Kysely } from 'kysely'
import type { Container, ContainerState, DB } from '../../db/types.js'
import type { Batcher } from '../batcher.js'
import { decodeKeyset, pageOf } from '../pagination.js'
import type { JobQueue } from '../queue.js'
import type { entitlementTerms } from '../billing/billing.service.js'
import { AdminOnly, ContainerNotFound } from './containers.errors.js'
import * as repo from './containers.repository.js'
import type { AssignAnswer, AssignCall } from './containers.assignment.js'

export interface ContainerDeps {
  queue: JobQueue
  /**
   * Billing enforced: the terms fractal_entitlement decides with (inside the assignment's round trip:
   * payment_required when they may not stream, else the plan's limits) and where to send them to pay.
   * None: no plan limits.
   */
  entitlement?: { terms: NonNullable<ReturnType<typeof entitlementTerms>>, appUrl: string }
  /** A container became ready for its user (a warm claim, a finished start): its host agent hears of it. */
  onReady?: (container: Container) => Promise<void>
  log?: { warn (obj: object, msg: string): void }
  /** How long a start may take before the job fails (`start_timeout`). */
  startTimeoutMs: number
  /** Assignments batched with concurrent ones (assignmentBatcher); absent: each in a call of its own. */
  assignments?: Batcher<AssignCall, AssignAnswer>
}

export async function getOwnContainer (db: Kysely<DB>, userId: string, id: string): Promise<Container> {
  const container = await repo.findContainer(db, id)
  // Another user's container is "not found": its existence is none of the caller's business.
  if (!container || container.user_id !== userId) throw new ContainerNotFound(id)
  return container
}

export interface ContainerFilters { limit: number, cursor?: string, state?: ContainerState, app?: string, region?: string, all?: boolean, user?: string }

/** The caller's containers, or (admins, `all`) everyone's; newest first, keyset-paginated. */
export async function listContainers (db: Kysely<DB>, principal: { userId: string, role: string }, query: ContainerFilters) {
  if ((query.all || query.user) && principal.role !== 'admin') throw new AdminOnly('list other users\' containers')
  if (query.user && !query.all) throw new AdminOnly('filter by user without all=true')
  const owner = query.all ? query.user ?? null : principal.userId
  const rows = await repo.listContainers(db, {
    owner, state: query.state ?? null, app: query.app ?? null, region: query.region ?? null
  }, { limit: query.limit + 1, before: query.cursor ? decodeKeyset(query.cursor) : null })
  return pageOf(rows, query.limit)
}

export async function updateContainer (db: Kysely<DB>, userId: string, id: string, changes: { useStun?: boolean, dpi?: number }): Promise<Container> {
  await getOwnContainer(db, userId, id)
  const updated = await repo.updateContainer(db, id, {
    ...(changes.useStun !== undefined ? { use_stun: changes.useStun } : {}),
    ...(changes.dpi !== undefined ? { dpi: changes.dpi } : {})
  })
  return updated!
}
