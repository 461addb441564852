import type { components } from './schema.js'

export type Problem = components['schemas']['Problem']
export type Job = components['schemas']['Job']
/** A problem's stable code; unknown codes (a newer server, a proxy's answer) pass through as strings. */
export type ProblemCode = Problem['code'] | (string & {})

/** A failed call: the RFC 9457 problem+json body of the answer, as fields. */
export class FractalProblemError extends Error {
  readonly status: number
  readonly code: ProblemCode
  readonly title: string
  readonly detail: string | undefined
  readonly errors: NonNullable<Problem['errors']>
  readonly type: string | undefined
  readonly instance: string | undefined
  readonly requestId: string | undefined
  /** Seconds to wait, from `Retry-After` (429 and 503), when the SDK gave up retrying. */
  readonly retryAfter: number | undefined
  readonly response: Response | undefined

  constructor (problem: Partial<Problem> & { status: number }, response?: Response) {
    const title = problem.title ?? response?.statusText ?? `HTTP ${problem.status}`
    super(problem.detail ? `${title}: ${problem.detail}` : title)
    this.name = 'FractalProblemError'
    this.status = problem.status
    this.code = problem.code ?? 'unexpected_response'
    this.title = title
    this.detail = problem.detail
    this.errors = problem.errors ?? []
    this.type = problem.type
    this.instance = problem.instance
    this.requestId = problem.requestId ?? response?.headers.get('x-request-id') ?? undefined
    const retryAfter = Number(response?.headers.get('retry-after') ?? NaN)
    this.retryAfter = Number.isFinite(retryAfter) ? retryAfter : undefined
    this.response = response
  }

  /** The error of an answer whose body may or may not be a problem (a proxy's HTML page is not). */
  static from (body: unknown, response: Response): FractalProblemError {
    const problem = typeof body === 'object' && body !== null ? body as Partial<Problem> : { detail: typeof body === 'string' && body ? body.slice(0, 500) : undefined }
    return new FractalProblemError({ ...problem, status: response.status }, response)
  }
}

/** A job that ended `failed` or `cancelled` while the caller waited for it. */
export class FractalJobError extends Error {
  readonly job: Job
  /** The job's `errorCode` (`no_capacity`, `start_timeout`, …), or `cancelled`. */
  readonly code: string

  constructor (job: Job) {
    super(`job ${job.id} ${job.state}${job.errorCode ? ` (${job.errorCode})` : ''}${job.message ? `: ${job.message}` : ''}`)
    this.name = 'FractalJobError'
    this.job = job
    this.code = job.errorCode ?? job.state
  }
}

type Result = { data?: unknown, error?: unknown, response: Response }

/** The body of a successful call (`await client.GET(…)`), or a thrown FractalProblemError. */
export function unwrap<R extends Result> (result: R): Exclude<R['data'], undefined> {
  if (!result.response.ok) throw FractalProblemError.from(result.error, result.response)
  return result.data as Exclude<R['data'], undefined>
}
