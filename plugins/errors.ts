import fp from 'fastify-plugin'
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify'
import { DomainError, UnstorableValue, type ErrorCode } from '../services/errors.js'
import { securityHeaders } from './security.js'

export const problemTypeBase = 'https://docs.fractal.co/problems/'

// The one code → status/title table.
const table: Record<ErrorCode, { status: number, title: string }> = {
  validation_failed: { status: 400, title: 'Validation failed' },
  bad_request: { status: 400, title: 'Bad request' },
  unauthorized: { status: 401, title: 'Unauthorized' },
  payment_required: { status: 402, title: 'Payment required' },
  forbidden: { status: 403, title: 'Forbidden' },
  not_found: { status: 404, title: 'Not found' },
  method_not_allowed: { status: 405, title: 'Method not allowed' },
  conflict: { status: 409, title: 'Conflict' },
  payload_too_large: { status: 413, title: 'Payload too large' },
  unsupported_media_type: { status: 415, title: 'Unsupported media type' },
  unprocessable: { status: 422, title: 'Unprocessable request' },
  rate_limited: { status: 429, title: 'Too many requests' },
  maintenance: { status: 503, title: 'Down for maintenance' },
  unavailable: { status: 503, title: 'Service unavailable' },
  internal: { status: 500, title: 'Internal server error' },
  token_invalid: { status: 400, title: 'Invalid token' },
  token_expired: { status: 400, title: 'Token expired' },
  token_used: { status: 400, title: 'Token already used' }
}

const byStatus: Record<number, ErrorCode> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'forbidden',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'unsupported_media_type',
  422: 'unprocessable',
  429: 'rate_limited',
  503: 'unavailable'
}

// Errors of a dependency that is away (PostgreSQL restarting, Redis down): 503 with Retry-After, not 500.
// 53300: too many connections (a restarted server filling up again); 57014: a statement cancelled after
// DATABASE_STATEMENT_TIMEOUT_MS (stuck on a lock, or a server too slow to answer).
// NR_CLOSED, UNCERTAIN_STATE, CONNECTION_BROKEN: bee-queue's Redis client (node_redis) while Redis is away.
const unavailableCodes = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'NR_CLOSED', 'UNCERTAIN_STATE', 'CONNECTION_BROKEN', '57014', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300'])
function isDependencyDown (err: Error & { code?: string, $retryable?: unknown, $metadata?: { httpStatusCode?: number } }): boolean {
  // A cloud API throttling us or failing (the AWS SDK's retryable and 5xx errors) is a dependency away too.
  if (err.$retryable || (err.$metadata?.httpStatusCode ?? 0) >= 500 || /Throttl/i.test(err.name)) return true
  return (err.code !== undefined && unavailableCodes.has(err.code)) ||
    /Connection terminated|timeout exceeded when trying to connect|is not queryable|enableOfflineQueue|enable_offline_queue|Connection is closed/.test(err.message)
}

// A value PostgreSQL cannot store or compare (a NUL character, a lone surrogate, an integer out of range):
// the caller's input, so a 400, never a 500.
const badValueCodes = new Set(['22021', '22P05', '22003', '22P02', '22001', '22007', '22008', '2200N'])

interface FieldError { field: string, message: string }
interface Problem { type: string, title: string, status: number, code: ErrorCode, detail?: string, instance?: string, requestId?: string, errors?: FieldError[] }

type AjvError = NonNullable<FastifyError['validation']>[number]
function fieldOf (context: string | undefined, e: AjvError): string {
  const params = e.params as { missingProperty?: string, additionalProperty?: string }
  const extra = params.missingProperty ?? params.additionalProperty
  const base = `/${context === 'querystring' ? 'query' : context ?? 'body'}${e.instancePath}`
  return extra ? `${base}/${extra}` : base
}

/** Turns any thrown value into the problem we answer. */
export function toProblem (err: FastifyError, request: FastifyRequest): { problem: Problem, retryAfter?: number } {
  const base = { instance: request.url.split('?')[0], requestId: request.id }
  const make = (code: ErrorCode, detail: string, extra: Partial<Problem> = {}): Problem =>
    ({ type: problemTypeBase + code, title: table[code].title, status: table[code].status, code, detail, ...base, ...extra })

  if (err instanceof DomainError) {
    // retryAfter is a header, not a member of the problem.
    const { retryAfter, ...extra } = err.extra ?? {}
    // Every 503 says when to come back (the spec's Unavailable response declares Retry-After).
    const after = retryAfter as number | undefined ?? (table[err.code].status === 503 ? 60 : undefined)
    return { problem: make(err.code, err.message, { title: err.title, ...extra }), retryAfter: after }
  }
  // A payment provider's refusal is ours to handle, not the caller's fault: never its 4xx, never its message.
  if (/^Stripe/.test(err.name ?? '') || /^Stripe/.test((err as { type?: string }).type ?? '')) {
    return { problem: make('unavailable', 'The payment provider could not handle the request. Try again shortly.'), retryAfter: 30 }
  }
  if (err.validation) {
    const errors = err.validation.map((e) => ({ field: fieldOf(err.validationContext, e), message: e.message ?? 'is invalid' }))
    return { problem: make('validation_failed', errors.map((e) => `${e.field.slice(1)} ${e.message}`).join('; '), { errors }) }
  }
  if (err.code && badValueCodes.has(err.code)) {
    return { problem: make('bad_request', new UnstorableValue().message) }
  }
  const status = err.statusCode ?? 500
  if (status >= 400 && status < 500) {
    const code = (err.code && err.code in table ? err.code : byStatus[status]) as ErrorCode | undefined
    if (code) return { problem: make(code, err.message, { status }) }
    return { problem: { ...make('bad_request', err.message), status } }
  }
  if (isDependencyDown(err) || status === 503) {
    return { problem: make('unavailable', 'A service this request needs is not reachable. Try again shortly.'), retryAfter: 5 }
  }
  return { problem: make('internal', 'Something went wrong on our side. The request id identifies it in our logs.') }
}

export function sendProblem (reply: FastifyReply, problem: Problem, retryAfter?: number) {
  if (retryAfter !== undefined) reply.header('retry-after', String(retryAfter))
  return reply.code(problem.status).type('application/problem+json').send(problem)
}

// Refusals before any operation runs. The spec's codes (its enum is closed): these are bad requests, told apart
// by status and title; every operation declares them (components/responses RequestTimeout, UriTooLong,
// RequestHeaderFieldsTooLarge).
const uriTooLongTitle = 'URI Too Long'
const clientErrors: Record<string, { status: number, title: string, detail: string }> = {
  ERR_HTTP_REQUEST_TIMEOUT: { status: 408, title: 'Request Timeout', detail: 'The request did not arrive in time.' },
  HPE_HEADER_OVERFLOW: { status: 431, title: 'Request Header Fields Too Large', detail: 'The request headers are larger than this server accepts.' },
  // Not Node's: its header limit counts the request line, and a request line that never ended is a URL too long.
  uri_too_long: { status: 414, title: uriTooLongTitle, detail: 'The URL is longer than this server accepts.' }
}

/**
 * Node's header overflow while it was still reading the request line: the URL is what is too long. `rawPacket`
 * is the chunk Node was parsing and `bytesParsed` where in it the parser stopped; a request line spread over
 * several chunks (not the case of one request written at once) stays a 431.
 */
function requestLineTooLong (err: Error & { code?: string, rawPacket?: unknown, bytesParsed?: number }): boolean {
  const packet = err.rawPacket
  if (err.code !== 'HPE_HEADER_OVERFLOW' || !Buffer.isBuffer(packet) || !/^[A-Z]+ \S/.test(packet.subarray(0, 32).toString('latin1'))) return false
  const endOfRequestLine = packet.indexOf(10)
  return endOfRequestLine === -1 || (err.bytesParsed ?? Infinity) <= endOfRequestLine
}

/** Fastify's own refusals before any route runs (a malformed URL, a path parameter too long): problems too. */
export function frameworkError (err: FastifyError, request: FastifyRequest, reply: FastifyReply) {
  const status = err.statusCode && err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 400
  const detail = err.code === 'FST_ERR_BAD_URL'
    ? 'The URL is malformed (bad percent-encoding).'
    // Fastify's message repeats the whole path.
    : err.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A path parameter is longer than this server accepts.' : err.message
  const { problem } = toProblem(Object.assign(new Error(detail), { statusCode: status }) as FastifyError, request)
  // Refused before routing: no hook runs, so the security headers are set here.
  reply.headers(securityHeaders)
  return sendProblem(reply, { ...problem, status, ...(status === 414 ? { title: uriTooLongTitle } : {}) })
}

/**
 * What Node itself refuses before Fastify sees a request (headers too large, a request too slow, bytes that
 * are not HTTP): a problem+json answer with the security headers, then the socket is closed.
 */
export function clientErrorHandler (this: { log: { trace (o: object, m: string): void } }, err: Error & { code?: string }, socket: import('node:stream').Duplex): void {
  if (err.code === 'ECONNRESET' || socket.destroyed) return
  const { status, title, detail } = clientErrors[requestLineTooLong(err) ? 'uri_too_long' : err.code ?? ''] ?? { status: 400, title: 'Bad Request', detail: 'The request is not valid HTTP.' }
  const code: ErrorCode = 'bad_request'
  this.log.trace({ err }, `client error ${status}`)
  if (socket.writable) {
    const body = JSON.stringify({ type: `${problemTypeBase}${code}`, title, status, code, detail })
    const headers = Object.entries(securityHeaders).map(([name, value]) => `${name}: ${value}\r\n`).join('')
    socket.write(`HTTP/1.1 ${status} ${title}\r\nContent-Type: application/problem+json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n${headers}Connection: close\r\n\r\n${body}`)
  }
  socket.destroy(err)
}

export default fp(async function errorsPlugin (app) {
  app.setErrorHandler(function errorHandler (err: FastifyError, request, reply) {
    const { problem, retryAfter } = toProblem(err, request)
    if (problem.status >= 500) request.log.error({ err, reqId: request.id }, 'request failed')
    else request.log.info({ code: problem.code, detail: problem.detail }, 'request rejected')
    return sendProblem(reply, problem, retryAfter)
  })

  app.setNotFoundHandler(function notFound (request, reply) {
    const detail = `There is no route ${request.method} ${request.url.split('?')[0]}.`
    return sendProblem(reply, toProblem(Object.assign(new Error(detail), { statusCode: 404 }) as FastifyError, request).problem)
  })
}, { fastify: '5.x', name: 'errors' })
