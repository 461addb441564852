import { defineError, fieldErrors } from '../errors.js'

export const ClusterNotFound = defineError('not_found', 'Cluster not found', (id: string) => `Cluster ${id} does not exist.`)
export const ClusterRegionNotFound = defineError('not_found', 'Region not found', (code: string) => `Region ${code} does not exist.`)
export const NoAmi = defineError('unprocessable', 'No AMI', (region: string) => `Region ${region} has no current AMI: pass ami.`,
  () => fieldErrors('/body/ami', 'is required: the region has no current AMI'))
export const BadSizes = defineError('unprocessable', 'Invalid sizes', (min: number, max: number) => `minSize (${min}) must not exceed maxSize (${max}).`,
  () => fieldErrors('/body/minSize', 'must not exceed maxSize'))
export const ClusterBusy = defineError('conflict', 'Cluster busy', (id: string, live: number) =>
  `Cluster ${id} runs ${live} container${live === 1 ? '' : 's'}: stop them first, or delete with force=true to stop them.`)
export const ClusterNotActive = defineError('conflict', 'Cluster not active', (id: string, status: string) => `Cluster ${id} is ${status}; only an active cluster can change.`)
