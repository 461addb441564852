import { defineError, fieldErrors } from '../errors.js'

export const RegionNotFound = defineError('not_found', 'Region not found', (code: string) => `Region ${code} does not exist.`)
export const AppNotFound = defineError('not_found', 'App not found', (id: string) => `App ${id} does not exist.`)
export const AppIdTaken = defineError('conflict', 'App id in use', (id: string) => `An app ${id} exists already.`)
export const UnknownPlans = defineError('unprocessable', 'Unknown plan', (ids: string[]) => `No plan ${ids.join(', ')}.`,
  () => fieldErrors('/body/plans', 'names a plan that does not exist'))
export const UnknownTaskDefinition = defineError('unprocessable', 'Unknown task definition',
  (ref: string, region: string) => `The cloud has no active task definition ${ref} in ${region}.`,
  () => fieldErrors('/body/taskDefinition', 'is not a task definition the cloud has'))
