import { defineError, fieldErrors } from '../errors.js'

export const BadUsagePeriod = defineError('unprocessable', 'Period not accepted', (field: 'from' | 'to', reason: string) => `${field} ${reason}.`,
  (field) => fieldErrors(`/query/${field}`, 'is not accepted'))
