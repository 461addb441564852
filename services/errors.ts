// Domain errors: a stable code and a title, no HTTP. plugins/errors.ts maps each code to a status.
export const errorCodes = [
  'validation_failed', 'bad_request', 'unauthorized', 'forbidden', 'not_found', 'method_not_allowed', 'conflict',
  'payload_too_large', 'unsupported_media_type', 'unprocessable', 'rate_limited', 'maintenance', 'unavailable', 'payment_required',
  'internal', 'token_invalid', 'token_expired', 'token_used'
] as const
export type ErrorCode = (typeof errorCodes)[number]

export class DomainError extends Error {
  constructor (readonly code: ErrorCode, readonly title: string, detail: string, readonly extra?: Record<string, unknown>) {
    super(detail)
    this.name = 'DomainError'
  }
}

/**
 * One error class per failure, declared once per domain:
 * `export const AppNotFound = defineError('not_found', 'App not found', (id: string) => \`App ${id} does not exist.\`)`
 */
export function defineError<A extends unknown[]> (code: ErrorCode, title: string, detail: (...args: A) => string, extra?: (...args: A) => Record<string, unknown>) {
  return class extends DomainError {
    constructor (...args: A) {
      super(code, title, detail(...args), extra?.(...args))
    }
  }
}

/** A 422 naming the field a business rule refuses, e.g. `fieldError('/body/password', 'is too common')`. */
export function fieldErrors (field: string, message: string) {
  return { errors: [{ field, message }] }
}

export const UnstorableValue = defineError('bad_request', 'Bad request',
  () => 'A value in the request cannot be stored (a NUL character, an unpaired surrogate, or a number out of range).')

/**
 * Whether PostgreSQL can take a value as a parameter: no NUL or unpaired surrogate in a string, an integer
 * within 64 bits. Checked before a value joins a batch (group commit), where one bad value would fail the
 * whole statement, other callers' work included.
 */
export function storable (value: string | number | boolean | null | undefined): boolean {
  if (typeof value === 'string') return !value.includes('\u0000') && value.isWellFormed()
  if (typeof value === 'number') return Number.isSafeInteger(value) || !Number.isInteger(value)
  return true
}
