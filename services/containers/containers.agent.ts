// The containers' own calls: their credential (the secret each was started with) and their pings.
import { timingSafeEqual } from 'node:crypto'
import type { Kysely } from 'kysely'
import type { Container, DB } from '../../db/types.js'
import { hashToId } from '../hashing.js'
import { WrongContainerSecret } from './containers.errors.js'
import { completeStartIfPinged } from './containers.lifecycle.js'
import * as repo from './containers.repository.js'
import type { ContainerDeps } from './containers.service.js'

/** The container's own credential: the secret it was started with, compared in constant time. */
export async function authenticateContainer (db: Kysely<DB>, id: string, secret: string | undefined): Promise<Container> {
  // Checked before the request is validated: an id that is not one never reaches the database.
  if (!/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(id)) throw new WrongContainerSecret()
  const container = await repo.findContainer(db, id)
  const expected = Buffer.from(container?.secret_hash ?? 'x'.repeat(43))
  const given = Buffer.from(hashToId(secret ?? ''))
  if (!container || !secret || given.length !== expected.length || !timingSafeEqual(given, expected)) throw new WrongContainerSecret()
  return container
}

/** What a ping may report besides `available`, and the time it arrived (the app's clock). */
export interface PingInput { idleSeconds?: number | undefined, lastInputAt?: Date | undefined, now?: number }

/**
 * A ping: the container is alive. `available` says no client is connected: a change of it writes the
 * logon/logoff history (container_session). A starting container's first ping completes its start.
 */
export async function ping (db: Kysely<DB>, deps: Pick<ContainerDeps, 'onReady'>, container: Container, available: boolean, input: PingInput = {}) {
  const connected = !available
  const now = input.now ?? Date.now()
  // The client's last input, by our clock: `idleSeconds` (no skew) before the container's `lastInputAt`; never
  // in the future. Only while a client is connected: the idle timeout counts from it (docs/sessions.md).
  const reported = input.idleSeconds !== undefined ? now - input.idleSeconds * 1000 : input.lastInputAt?.getTime()
  const lastInput = connected && reported !== undefined && Number.isFinite(reported) ? new Date(Math.min(reported, now)) : undefined
  await db.transaction().execute(async (trx) => {
    await repo.updateContainer(trx, container.id, {
      last_ping_at: new Date(),
      client_connected: connected,
      ...(connected !== container.client_connected ? { client_changed_at: new Date(now) } : {}),
      ...(lastInput ? { last_input_at: lastInput } : {})
    })
    if (connected && !container.client_connected) await repo.openSession(trx, container.id, container.user_id)
    if (!connected && container.client_connected) await repo.closeSessions(trx, container.id)
  })
  if (container.state === 'starting') {
    const ready = await completeStartIfPinged(db, container.id)
    if (ready) await deps.onReady?.(ready)
  }
}
