import { defineError, fieldErrors } from '../errors.js'

export const HandshakeRefused = defineError('unauthorized', 'Unauthorized', (why: string) => `The handshake is not authenticated: ${why}.`)
export const HostIsLive = defineError('conflict', 'Host is live', (instanceId: string) =>
  `Host ${instanceId} is live: its secret is replaced only with its current one in X-Host-Secret, or once it is marked dead.`)
export const WrongHostSecret = defineError('unauthorized', 'Unauthorized', () => 'The host secret is not valid for this host.')
export const MissingInstanceId = defineError('validation_failed', 'Validation failed', () => 'instanceId (or InstanceID) is required.',
  () => fieldErrors('/body/instanceId', 'is required'))
export const MissingRegion = defineError('validation_failed', 'Validation failed', () => 'region is required with a bootstrap secret.',
  () => fieldErrors('/body/region', 'is required'))
export const UnknownRegion = defineError('unprocessable', 'Unknown region', (region: string) => `Region ${region} does not exist.`,
  () => fieldErrors('/body/region', 'does not exist'))
