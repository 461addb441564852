import { defineError, fieldErrors } from '../errors.js'

export const InvalidCredentials = defineError('unauthorized', 'Invalid credentials', () => 'The e-mail address or the password is wrong.')
export const TooManyFailures = defineError('rate_limited', 'Too many failed sign-ins',
  (retryAfter: number) => `Too many failed sign-ins for this address. Try again in ${retryAfter} seconds.`,
  (retryAfter: number) => ({ retryAfter }))
export const InvalidRefreshToken = defineError('unauthorized', 'Invalid refresh token', () => 'The refresh token is not valid. Sign in again.')
export const RefreshTokenReused = defineError('unauthorized', 'Refresh token reused',
  () => 'This refresh token was already used: the session is revoked. Sign in again.')
export const TokenInvalid = defineError('token_invalid', 'Invalid token', () => 'This link is not valid. Ask for a new one.')
export const TokenExpired = defineError('token_expired', 'Token expired', () => 'This link has expired. Ask for a new one.')
export const TokenUsed = defineError('token_used', 'Token already used', () => 'This link was already used.')
export const WeakPassword = defineError('unprocessable', 'Password not accepted', (field: string, reason: string) => `The password ${reason}.`,
  (field: string, reason: string) => fieldErrors(field, reason))
export const WrongCurrentPassword = defineError('unprocessable', 'Wrong current password', () => 'The current password is wrong.',
  () => fieldErrors('/body/currentPassword', 'is wrong'))
export const CurrentPasswordRequired = defineError('unprocessable', 'Current password required', () => 'Changing the password needs the current one.',
  () => fieldErrors('/body/currentPassword', 'is required to change the password'))
export const ReauthenticationRequired = defineError('unprocessable', 'Current password required',
  (minutes: number) => `Changing the e-mail address needs the current password, or a sign-in within the last ${minutes} minutes.`,
  () => fieldErrors('/body/currentPassword', 'is required to change the e-mail address (or sign in again)'))
export const NameNotAllowed = defineError('unprocessable', 'Name not allowed', (field: string) => 'This name contains words we do not allow.',
  (field: string) => fieldErrors(field, 'contains words we do not allow'))
export const SessionNotFound = defineError('not_found', 'Session not found', (id: string) => `Session ${id} does not exist.`)
export const UserNotFound = defineError('not_found', 'User not found', (id: string) => `User ${id} does not exist.`)
export const CannotDemoteSelf = defineError('unprocessable', 'Cannot change your own role', () => 'An admin cannot remove their own admin role or disable themselves.',
  () => fieldErrors('/body', 'would lock you out'))
export const EmailTaken = defineError('conflict', 'Address in use', () => 'Another account uses this address now.')
export const GoogleNotConfigured = defineError('unavailable', 'Google sign-in is off', () => 'Google sign-in is not configured on this server.')
export const GoogleRejected = defineError('unauthorized', 'Google sign-in failed', (why: string) => `Google did not confirm this sign-in: ${why}.`)
export const GoogleEmailUnverified = defineError('conflict', 'Address not verified by Google',
  () => 'An account uses this address, and Google does not say the address is verified. Sign in with the password instead.')
export const AccountGone = defineError('unauthorized', 'Account gone', () => 'The account of this access token no longer exists. Sign in again.')

// Personal access tokens (services/accounts/personal-tokens.service.ts).
export const PersonalTokenNotFound = defineError('not_found', 'Token not found', (id: string) => `Personal access token ${id} does not exist.`)
export const BadTokenScopes = defineError('unprocessable', 'Scopes not accepted', (scopes: string[]) => `A token can only carry scopes you hold; you do not hold ${scopes.join(', ')}.`,
  (scopes: string[]) => fieldErrors('/body/scopes', `includes ${scopes.join(', ')}, which you do not hold`))
export const BadTokenExpiry = defineError('unprocessable', 'Expiry not accepted', (reason: string) => `expiresAt ${reason}.`,
  (reason: string) => fieldErrors('/body/expiresAt', reason))
export const TooManyPersonalTokens = defineError('unprocessable', 'Too many tokens', (max: number) => `An account may hold ${max} live personal access tokens; revoke one first.`,
  (max: number) => fieldErrors('/body', `at most ${max} live tokens`))
/** What only a signed-in session may do: a personal access token is refused (403), whatever its scopes. */
export const SessionRequired = defineError('forbidden', 'Forbidden', (what: string) => `A personal access token cannot ${what}: sign in.`)
