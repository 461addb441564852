import { defineError } from '../errors.js'

export const RegionNotFound = defineError('not_found', 'Region not found', (code: string) => `Region ${code} does not exist.`)
export const AppNotFound = defineError('not_found', 'App not found', (id: string) => `App ${id} does not exist.`)
