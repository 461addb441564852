import type { Container, Job } from '../../db/types.js'
import type { components } from '../../openapi/schema.js'

type Schemas = components['schemas']

/** A container: connection info once it runs and only to its owner (`viewer`), never its secret. */
export function presentContainer (row: Container, viewer: string | null = row.user_id): Schemas['Container'] {
  const running = (row.state === 'available' || row.state === 'in_use') && row.host_ip !== null && viewer === row.user_id
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
    connection: running
      ? { ip: row.host_ip!, ports: { tcp32262: row.port_32262!, udp32263: row.port_32263!, tcp32273: row.port_32273! }, aesKey: row.aes_key }
      : null
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
