import { defineError } from '../errors.js'

export const UnknownMailTemplate = defineError('internal', 'Unknown mail template', (name: string) => `There is no mail template named ${name}.`)
export const InvalidMailRecipient = defineError('bad_request', 'Invalid email address', () => 'A mail goes to exactly one address.')
