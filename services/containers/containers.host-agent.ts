// The host agent hears who uses a container handed out (its start values) and mounts the user's storage.
import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import type { HostAgentClient } from '../hosts/agent-client.js'
import * as repo from './containers.repository.js'

export const sendStartValuesJob = { family: 'containers', name: 'sendStartValues' } as const

/** Tells the container's host agent who uses it now (retried by the queue; a container gone meanwhile is skipped). */
export async function sendStartValues (
  db: Kysely<DB>, agent: HostAgentClient, containerId: string,
  storageTokens: (userId: string) => Promise<Array<{ provider: string, accessToken: string }>> = async () => []
) {
  const container = await repo.findContainer(db, containerId)
  if (!container || container.state !== 'in_use' || !container.user_id || !container.host_ip || container.port_32262 === null) return { skipped: true }
  await agent.setStartValues(container.host_ip, { containerId: container.id, userId: container.user_id, hostPort: container.port_32262, dpi: container.dpi })
  // The user's cloud storage, with tokens refreshed as needed: each mount the agent confirms is recorded.
  const mounted: string[] = []
  for (const { provider, accessToken } of await storageTokens(container.user_id)) {
    await agent.mountStorage(container.host_ip, { containerId: container.id, hostPort: container.port_32262, provider, accessToken })
    mounted.push(provider)
  }
  if (mounted.length > 0) await repo.updateContainer(db, container.id, { storage_mounts: mounted })
  return { sent: true, mounted }
}
