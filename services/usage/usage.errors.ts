import { defineError, fieldErrors } from '../errors.js'

export const BadUsagePeriod = defineError('unprocessable', 'Period not accepted', (reason: string) => `to ${reason}.`,
  () => fieldErrors('/query/to', 'is not after from, or more than 366 days after it'))
