import { defineError, fieldErrors } from '../errors.js'

export const ContainerNotFound = defineError('not_found', 'Container not found', (id: string) => `Container ${id} does not exist.`)
export const JobNotFound = defineError('not_found', 'Job not found', (id: string) => `Job ${id} does not exist.`)
export const AppNotOffered = defineError('not_found', 'App not offered', (app: string, region: string) => `App ${app} is not offered in region ${region}.`)
export const UnknownApp = defineError('not_found', 'App not found', (app: string) => `App ${app} does not exist.`)
export const RegionDisabled = defineError('unprocessable', 'Region not accepting containers',
  (region: string) => `Region ${region} is not accepting new containers. Choose another or leave region out.`,
  () => fieldErrors('/body/region', 'is not accepting new containers'))
export const AlreadyRunning = defineError('conflict', 'Already running', (app: string, id: string) => `You already have a ${app} container (${id}). Stop it first.`)
export const IdempotencyMismatch = defineError('unprocessable', 'Idempotency-Key reused',
  () => 'This Idempotency-Key was used with a different request. Use a new key for a new request.',
  () => fieldErrors('/headers/idempotency-key', 'was used with a different body'))
export const WrongContainerSecret = defineError('unauthorized', 'Unauthorized', () => 'The container secret is not valid for this container.')
export const AdminOnly = defineError('forbidden', 'Forbidden', (what: string) => `Only admins can ${what}.`)
export const PoolNotFound = defineError('not_found', 'Warm pool not found', (app: string, region: string) => `App ${app} is not offered in region ${region}.`)
export const UnknownCluster = defineError('unprocessable', 'Unknown cluster', (cluster: string) => `No active cluster is called ${cluster}.`,
  () => fieldErrors('/body/cluster', 'is not an active cluster'))
export const ClusterOutsideRegion = defineError('unprocessable', 'Cluster in another region', (cluster: string, region: string) => `Cluster ${cluster} is not in region ${region}.`,
  () => fieldErrors('/body/cluster', 'is not in the region asked for'))
export const ClusterNeedsFleetWrite = defineError('forbidden', 'Forbidden', () => 'Starting a container on a named cluster needs the scope fleet:write.')
