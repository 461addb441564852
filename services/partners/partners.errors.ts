import { defineError, fieldErrors } from '../errors.js'

export const PartnerNotFound = defineError('not_found', 'Partner not found', (id: string) => `Partner ${id} does not exist.`)
export const PartnerNameTaken = defineError('conflict', 'Partner name in use', (name: string) => `A partner is already called ${name}.`)
export const PartnerKeyNotFound = defineError('not_found', 'API key not found', (id: string) => `API key ${id} does not exist.`)
export const BadKeyExpiry = defineError('unprocessable', 'Expiry not accepted', (reason: string) => `expiresAt ${reason}.`,
  (reason: string) => fieldErrors('/body/expiresAt', reason))
/** Another partner's user is not found either: a partner learns nothing about users that are not theirs. */
export const PartnerUserNotFound = defineError('not_found', 'User not found', (id: string) => `User ${id} is not one of your users.`)
export const UnknownPartner = defineError('unprocessable', 'Unknown partner', (id: string) => `Partner ${id} does not exist.`,
  () => fieldErrors('/body/partnerId', 'is not a partner'))

// A partner API key that cannot be used: each a 401 (the caller holds no valid credential).
export const PartnerKeyMissing = defineError('unauthorized', 'Unauthorized', () => 'A partner API key is required in X-Api-Key.')
export const PartnerKeyInvalid = defineError('unauthorized', 'Unauthorized', () => 'The partner API key is not valid.')
export const PartnerKeyExpired = defineError('unauthorized', 'Unauthorized', () => 'The partner API key has expired.')
export const PartnerKeyRevoked = defineError('unauthorized', 'Unauthorized', () => 'The partner API key has been revoked.')
