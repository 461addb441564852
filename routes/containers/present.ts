import type { Container, ContainerGrant, Job } from '../../db/types.js'
import type { ContainerEventRow } from '../../services/containers/containers.events.js'
import type { components } from '../../openapi/schema.js'

type Schemas = components['schemas']

/**
 * A container. Its connection details (the AES key among them) only to its owner (`viewer`), and only when
 * `reveal` says so: grants not required, or the request carries a live grant of it. Never its secret.
 */
export function presentContainer (row: Container, options: { viewer?: string | null, reveal?: boolean } = {}): Schemas['Container'] {
  const viewer = options.viewer === undefined ? row.user_id : options.viewer
  const runs = (row.state === 'available' || row.state === 'in_use') && row.host_ip !== null && row.session_ended_at === null
  const shown = runs && viewer === row.user_id && options.reveal === true
  return {
    id: row.id,
    userId: row.user_id,
    app: row.app_id,
    region: row.region_code,
    state: row.state,
    dpi: row.dpi,
    useStun: row.use_stun,
    createdAt: row.created_at.toISOString(),
    failureReason: row.failure_reason,
    storage: row.storage_mounts ?? [],
    connection: shown ? presentConnection(row) : null,
    connectable: runs && row.user_id !== null,
    endsAt: row.ends_at?.toISOString() ?? null,
    endingReason: row.ending_reason,
    maxSessionEndsAt: row.state === 'in_use' ? row.max_ends_at?.toISOString() ?? null : null
  }
}

/** How to connect to a running container (its owner's, with a grant). */
export function presentConnection (row: Container): Schemas['Connection'] {
  return { ip: row.host_ip!, ports: { tcp32262: row.port_32262!, udp32263: row.port_32263!, tcp32273: row.port_32273! }, aesKey: row.aes_key }
}

/** A grant with its token and the connection details it releases. */
export function presentGrant (grant: ContainerGrant, token: string, container: Container): Schemas['ConnectionGrant'] {
  return {
    id: grant.id,
    containerId: grant.container_id,
    token,
    createdAt: grant.created_at.toISOString(),
    expiresAt: grant.expires_at.toISOString(),
    connection: presentConnection(container)
  }
}

/** A container event of the event stream. */
export function presentContainerEvent (row: ContainerEventRow): Schemas['ContainerEvent'] {
  return {
    id: String(row.id),
    kind: row.kind,
    fromState: row.from_state as Schemas['ContainerState'] | null,
    toState: row.to_state as Schemas['ContainerState'],
    reason: row.reason,
    endsAt: row.ends_at?.toISOString() ?? null,
    at: row.at.toISOString()
  }
}

/** A job; a parent job (an AMI roll) with its child jobs when they are given. */
export function presentJob (row: Job, children?: Job[]): Schemas['Job'] {
  return {
    id: row.id,
    kind: row.kind,
    parentId: row.parent_id,
    ...(children ? { children: children.map((c) => ({ id: c.id, state: c.state, progress: c.progress, message: c.message, errorCode: c.error_code, result: c.result })) } : {}),
    state: row.state,
    progress: row.progress,
    message: row.message,
    result: row.result,
    errorCode: row.error_code,
    createdAt: row.created_at.toISOString(),
    updatedAt: row.updated_at.toISOString()
  }
}
