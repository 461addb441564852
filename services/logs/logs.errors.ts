import { defineError, fieldErrors } from '../errors.js'

export const LogNotFound = defineError('not_found', 'Log not found', (id: string) => `Log ${id} does not exist.`)
export const NotGzip = defineError('validation_failed', 'Validation failed', () => 'An application/gzip body must be gzip data.',
  () => fieldErrors('/body', 'is not gzip data'))
export const WrongSender = defineError('forbidden', 'Forbidden', (sender: string, who: string) => `A ${who} cannot send ${sender} logs.`)
export const LogContainerNotFound = defineError('not_found', 'Container not found', (id: string) => `Container ${id} does not exist.`)
export const LogNotStored = defineError('conflict', 'Not stored yet', (id: string) => `Log ${id} is not stored yet; try again shortly.`)
export const LogTooLarge = defineError('payload_too_large', 'Payload too large', (max: number) => `The log holds more than ${max} bytes once inflated (the most a log may hold).`)
