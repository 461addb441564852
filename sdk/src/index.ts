// @fractal/sdk: typed calls to the Fractal webserver API (openapi-fetch over the generated types), with what
// every client app needs: bearer auth with refresh-token rotation, Idempotency-Key, Retry-After retries,
// problem errors, pagination, and job waiting over server-sent events.
import createClient, { type Client, type Middleware } from 'openapi-fetch'
import { FractalJobError, FractalProblemError, unwrap, type Job } from './errors.js'
import { bearerOperations, idempotentOperations } from './operations.js'
import type { components, paths } from './schema.js'
import { readServerSentEvents, type ServerSentEvent } from './sse.js'

export { FractalJobError, FractalProblemError, unwrap }
export type { Job, Problem, ProblemCode } from './errors.js'
export type { components, operations, paths } from './schema.js'

export type TokenPair = components['schemas']['TokenPair']

/**
 * The API's paths, except that a required `Idempotency-Key` header is optional: the client generates one.
 */
export type SdkPaths = { [P in keyof paths]: { [M in keyof paths[P]]: OptionalIdempotencyKey<paths[P][M]> } }
type OptionalIdempotencyKey<Op> = Op extends { parameters: { header: infer H extends { 'Idempotency-Key': string } } }
  ? Omit<Op, 'parameters'> & {
    parameters: Omit<Op['parameters'], 'header'> & ({} extends Omit<H, 'Idempotency-Key'>
      ? { header?: Omit<H, 'Idempotency-Key'> & { 'Idempotency-Key'?: string } }
      : { header: Omit<H, 'Idempotency-Key'> & { 'Idempotency-Key'?: string } })
  }
  : Op

export interface RetryOptions {
  /** Retries of one call answered 429 or 503 (default 2). */
  max?: number
  /** The longest wait the client accepts; a longer `Retry-After` is not waited for: the answer surfaces (default 30 s). */
  maxDelayMs?: number
  /** The first wait when the answer has no `Retry-After`, doubled each time (default 500 ms). */
  baseDelayMs?: number
}

export interface FractalClientOptions {
  /** Where the API is, e.g. `https://api.fractal.co` (paths start with `/v1`). */
  baseUrl: string
  accessToken?: string
  refreshToken?: string
  /**
   * A personal access token (`frl_pat_…`, `POST /v1/users/me/tokens`) in place of a session: sent as the
   * bearer token on every call, never refreshed (an expired or revoked one surfaces as a 401). Not with
   * `accessToken` or `refreshToken`.
   */
  personalAccessToken?: string
  /** Called with every new token pair (sign-in and each refresh): store the refresh token here. */
  onTokens?: (pair: TokenPair) => void | Promise<void>
  fetch?: (input: Request) => Promise<Response>
  /** Retries on 429 and 503: a count, or the full options (`0` turns them off). */
  retries?: number | RetryOptions
}

/** One server-sent event of GET /v1/jobs/{id}/events. */
export interface JobEvent {
  id: string
  event: 'progress' | 'succeeded' | 'failed' | 'cancelled'
  data: Job
}

/** One server-sent event of GET /v1/containers/{id}/events: a state change or a session event (issue 22). */
export interface ContainerStreamEvent {
  id: string
  event: components['schemas']['ContainerEvent']['kind']
  data: components['schemas']['ContainerEvent']
}

export interface StreamJobOptions {
  signal?: AbortSignal
  /** Resume after this event id (the stream sends only newer events). */
  lastEventId?: string
  /** Reconnections in a row without a new event before giving up (default 5). */
  maxReconnects?: number
  /** Wait before reconnecting, unless the stream says otherwise with `retry:` (default 1000 ms). */
  reconnectDelayMs?: number
}

export interface WaitForJobOptions extends StreamJobOptions {
  /** Give up after this long: rejects with a `TimeoutError` DOMException. */
  timeoutMs?: number
}

// Paths whose GET answers `{ items, nextCursor }` and takes a `cursor`.
type GetOperation<P extends keyof SdkPaths> = SdkPaths[P] extends { get: infer Op } ? Op : never
export type PagedPath = {
  [P in keyof SdkPaths]: SdkPaths[P] extends {
    get: {
      parameters: { query?: { cursor?: string } }
      responses: { 200: { content: { 'application/json': { items: unknown[], nextCursor: string | null } } } }
    }
  } ? P : never
}[keyof SdkPaths]
export type PageOf<P extends PagedPath> = GetOperation<P> extends { responses: { 200: { content: { 'application/json': infer Page } } } } ? Page : never
export type ItemOf<P extends PagedPath> = PageOf<P> extends { items: Array<infer Item> } ? Item : never
type ParametersOf<P extends PagedPath> = GetOperation<P> extends { parameters: infer Parameters } ? Parameters : never
type QueryOf<P extends PagedPath> = ParametersOf<P> extends { query?: infer Query } ? NonNullable<Query> : never
export interface PageInit<P extends PagedPath> {
  params?: Omit<ParametersOf<P>, 'query'> & { query?: Omit<QueryOf<P>, 'cursor'> }
  signal?: AbortSignal
}

export type FractalClient = Client<SdkPaths> & {
  /** Signs in with e-mail and password; the client keeps the pair (and reports it through `onTokens`). */
  signIn (credentials: { email: string, password: string }): Promise<TokenPair>
  /** Replaces the tokens the client sends (null signs the client out locally). */
  setTokens (tokens: { accessToken?: string, refreshToken?: string } | null): void
  tokens (): { accessToken: string | undefined, refreshToken: string | undefined }
  /** Every item of a cursor-paginated list, fetching pages as the caller iterates. */
  paginate<P extends PagedPath> (path: P, init?: PageInit<P>): AsyncGenerator<ItemOf<P>, void, undefined>
  /** Every page of a cursor-paginated list. */
  pages<P extends PagedPath> (path: P, init?: PageInit<P>): AsyncGenerator<PageOf<P>, void, undefined>
  /** A job's events as they happen: `progress` events, then one terminal event, after which it ends. */
  streamJob (jobId: string, options?: StreamJobOptions): AsyncGenerator<JobEvent, void, undefined>
  /** The job once it succeeded; a failed or cancelled job rejects with FractalJobError. */
  waitForJob (jobId: string, options?: WaitForJobOptions): Promise<Job>
  /**
   * A container's events as they happen (`state`, `session_warning` with `endsAt`, `session_extended`,
   * `session_ended`), resuming after dropped connections; ends once the container is stopped or failed.
   */
  streamContainer (containerId: string, options?: StreamJobOptions): AsyncGenerator<ContainerStreamEvent, void, undefined>
}

const terminalEvents = new Set(['succeeded', 'failed', 'cancelled'])

export function createFractalClient (options: FractalClientOptions): FractalClient {
  const baseFetch = options.fetch ?? ((request: Request) => globalThis.fetch(request))
  const retry = typeof options.retries === 'number' ? { max: options.retries } : options.retries ?? {}
  const maxRetries = retry.max ?? 2
  const maxDelayMs = retry.maxDelayMs ?? 30_000
  const baseDelayMs = retry.baseDelayMs ?? 500
  if (options.personalAccessToken !== undefined) {
    if (options.accessToken !== undefined || options.refreshToken !== undefined) {
      throw new TypeError('createFractalClient: personalAccessToken replaces a session: pass it without accessToken and refreshToken')
    }
    if (!options.personalAccessToken.startsWith('frl_pat_')) throw new TypeError('createFractalClient: personalAccessToken must start with frl_pat_')
  }
  // A personal access token is a bearer token without a refresh token: a 401 has nothing to refresh.
  let accessToken = options.personalAccessToken ?? options.accessToken
  let refreshToken = options.refreshToken
  let refreshing: Promise<boolean> | undefined

  const api = createClient<SdkPaths>({ baseUrl: options.baseUrl, fetch: baseFetch })

  /** What a call needs to be sent again: a copy made before its body was read, and the token it carried. */
  const sent = new WeakMap<Request, { copy: () => Request, token: string | undefined, bearer: boolean }>()

  async function storeTokens (pair: TokenPair) {
    accessToken = pair.accessToken
    refreshToken = pair.refreshToken
    await options.onTokens?.(pair)
  }

  /** One refresh for all the calls that failed with the token `stale`; resolves whether a new token is there. */
  function refreshAfter (stale: string | undefined): Promise<boolean> {
    if (accessToken !== stale) return Promise.resolve(accessToken !== undefined)
    refreshing ??= (async () => {
      const token = refreshToken
      if (!token) return false
      const { data, response } = await api.POST('/v1/sessions/refresh', { body: { refreshToken: token } })
      if (!data) {
        // A spent or revoked refresh token never works again; a 429 or 5xx might later.
        if ((response.status === 400 || response.status === 401) && refreshToken === token) refreshToken = undefined
        return false
      }
      await storeTokens(data)
      return true
    })().finally(() => { refreshing = undefined })
    return refreshing
  }

  const middleware: Middleware = {
    onRequest ({ request, schemaPath }) {
      const operation = `${request.method} ${schemaPath}`
      const bearer = bearerOperations.has(operation)
      if (bearer && accessToken && !request.headers.has('authorization')) request.headers.set('authorization', `Bearer ${accessToken}`)
      // The key lives on the request, so the retries below (copies of it) send the same one.
      if (idempotentOperations.has(operation) && !request.headers.has('idempotency-key')) request.headers.set('idempotency-key', globalThis.crypto.randomUUID())
      const token = bearer && request.headers.get('authorization') === `Bearer ${accessToken}` ? accessToken : undefined
      // A body can be read once: keep a copy for a resend. Without a body, a resend is made from the request.
      const kept = request.body === null ? request : request.clone()
      const copy = request.body === null ? () => new Request(kept) : () => kept.clone()
      sent.set(request, { copy, token, bearer })
    },

    async onResponse ({ request, response }) {
      const call = sent.get(request)
      if (!call) return undefined
      let answer = response
      let refreshed = false
      let retries = 0
      while (true) {
        let wait = 0
        if (answer.status === 401 && call.bearer && !refreshed && (call.token !== undefined || !request.headers.has('authorization'))) {
          refreshed = true
          if (!(await refreshAfter(call.token))) return answer
        } else if ((answer.status === 429 || answer.status === 503) && retries < maxRetries) {
          wait = retryDelay(answer, retries, baseDelayMs)
          if (wait > maxDelayMs) return answer
          retries++
        } else {
          return answer
        }
        await answer.body?.cancel()
        if (wait > 0) await sleep(wait, request.signal)
        const again = call.copy()
        if (call.bearer && (call.token !== undefined || !request.headers.has('authorization')) && accessToken) {
          again.headers.set('authorization', `Bearer ${accessToken}`)
          call.token = accessToken
        }
        answer = await baseFetch(again)
      }
    }
  }
  api.use(middleware)

  async function * pages<P extends PagedPath> (path: P, init: PageInit<P> = {}): AsyncGenerator<PageOf<P>, void, undefined> {
    const get = api.GET as unknown as (path: string, init: object) => Promise<{ data?: unknown, error?: unknown, response: Response }>
    let cursor: string | undefined
    do {
      const page = unwrap(await get(path, {
        ...init,
        params: { ...init.params, query: { ...init.params?.query, ...(cursor === undefined ? {} : { cursor }) } }
      })) as Awaited<PageOf<P>>
      yield page
      cursor = (page as { nextCursor: string | null }).nextCursor ?? undefined
    } while (cursor !== undefined)
  }

  async function * paginate<P extends PagedPath> (path: P, init?: PageInit<P>): AsyncGenerator<ItemOf<P>, void, undefined> {
    for await (const page of pages(path, init)) yield * (page as { items: Array<ItemOf<P>> }).items
  }

  /**
   * An event stream that resumes: reopened with Last-Event-ID after a dropped connection or a 5xx (at most
   * `maxReconnects` times in a row, `retry` or `reconnectDelayMs` apart), final on a problem the server meant
   * (4xx). `accept` picks the events to yield and says which one is the last; when the stream ends without
   * it, `ended` reads the resource: its final event (or none) when it has ended, `false` to resume.
   */
  async function * resumable<E extends { id: string }> (what: string, streamOptions: StreamJobOptions, source: {
    open (lastEventId: string | undefined, signal: AbortSignal | undefined): Promise<ReadableStream<Uint8Array> | null | undefined>
    accept (message: ServerSentEvent & { id: string }): { event: E, last: boolean } | undefined
    ended (lastEventId: string | undefined, signal: AbortSignal | undefined): Promise<{ final?: E } | false>
  }): AsyncGenerator<E, void, undefined> {
    const { signal } = streamOptions
    const maxReconnects = streamOptions.maxReconnects ?? 5
    let delay = streamOptions.reconnectDelayMs ?? 1000
    let lastEventId = streamOptions.lastEventId
    let failures = 0
    while (true) {
      signal?.throwIfAborted()
      let error: unknown
      try {
        const body = await source.open(lastEventId, signal)
        if (!body) throw new FractalProblemError({ status: 502, title: 'Bad gateway', detail: 'The event stream has no body.' })
        for await (const message of readServerSentEvents(body)) {
          if (message.retry !== undefined) delay = message.retry
          if (message.id === undefined) continue
          const accepted = source.accept(message as ServerSentEvent & { id: string })
          if (!accepted) continue
          lastEventId = message.id
          failures = 0
          yield accepted.event
          if (accepted.last) return
        }
        // The stream ended without the last event: the connection went away (resume below), or the resource
        // ended with no event newer than ours (the server sends only newer ones): then its state says so.
        const end = await source.ended(lastEventId, signal)
        if (end) {
          if (end.final) yield end.final
          return
        }
        error = new FractalProblemError({ status: 502, title: 'Bad gateway', detail: `The event stream of ${what} kept ending before it did.` })
      } catch (err) {
        if (signal?.aborted) throw signal.reason
        // A problem the server meant (404, 401 after a failed refresh, …) is final; a dropped connection or a 5xx is not.
        if (err instanceof FractalProblemError && err.status < 500) throw err
        error = err
      }
      if (++failures > maxReconnects) throw error
      await sleep(delay, signal)
    }
  }

  const lastEventHeader = (lastEventId: string | undefined) => lastEventId === undefined ? {} : { 'Last-Event-ID': lastEventId }
  const withSignal = (signal: AbortSignal | undefined) => signal ? { signal } : {}

  function streamJob (jobId: string, streamOptions: StreamJobOptions = {}): AsyncGenerator<JobEvent, void, undefined> {
    return resumable<JobEvent>(`job ${jobId}`, streamOptions, {
      open: async (lastEventId, signal) => unwrap(await api.GET('/v1/jobs/{jobId}/events', {
        params: { path: { jobId }, header: lastEventHeader(lastEventId) }, parseAs: 'stream', ...withSignal(signal)
      })),
      accept: (message) => ['progress', ...terminalEvents].includes(message.event)
        ? { event: { id: message.id, event: message.event as JobEvent['event'], data: JSON.parse(message.data) as Job }, last: terminalEvents.has(message.event) }
        : undefined,
      async ended (lastEventId, signal) {
        const job = unwrap(await api.GET('/v1/jobs/{jobId}', { params: { path: { jobId } }, ...withSignal(signal) }))
        if (!terminalEvents.has(job.state)) return false
        return { final: { id: lastEventId ?? String(Date.parse(job.updatedAt)), event: job.state as JobEvent['event'], data: job } }
      }
    })
  }

  function streamContainer (containerId: string, streamOptions: StreamJobOptions = {}): AsyncGenerator<ContainerStreamEvent, void, undefined> {
    return resumable<ContainerStreamEvent>(`container ${containerId}`, streamOptions, {
      open: async (lastEventId, signal) => unwrap(await api.GET('/v1/containers/{containerId}/events', {
        params: { path: { containerId }, header: lastEventHeader(lastEventId) }, parseAs: 'stream', ...withSignal(signal)
      })),
      accept: (message) => ({
        event: { id: message.id, event: message.event as ContainerStreamEvent['event'], data: JSON.parse(message.data) as ContainerStreamEvent['data'] },
        last: false
      }),
      // The server ends the stream once the container has ended; otherwise the connection went away.
      async ended (_lastEventId, signal) {
        const container = unwrap(await api.GET('/v1/containers/{containerId}', { params: { path: { containerId } }, ...withSignal(signal) }))
        return container.state === 'stopped' || container.state === 'failed' ? {} : false
      }
    })
  }

  async function waitForJob (jobId: string, waitOptions: WaitForJobOptions = {}): Promise<Job> {
    const { timeoutMs, ...streamOptions } = waitOptions
    const signals = [waitOptions.signal, timeoutMs === undefined ? undefined : AbortSignal.timeout(timeoutMs)].filter((s) => s !== undefined)
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0]
    for await (const event of streamJob(jobId, { ...streamOptions, ...(signal ? { signal } : {}) })) {
      if (event.event === 'succeeded') return event.data
      if (event.event !== 'progress') throw new FractalJobError(event.data)
    }
    throw new Error(`the events of job ${jobId} ended without a terminal event`)
  }

  return {
    ...api,
    async signIn (credentials) {
      const pair = unwrap(await api.POST('/v1/sessions', { body: credentials }))
      await storeTokens(pair)
      return pair
    },
    setTokens (tokens) {
      accessToken = tokens?.accessToken
      refreshToken = tokens?.refreshToken
    },
    tokens: () => ({ accessToken, refreshToken }),
    paginate,
    pages,
    streamJob,
    streamContainer,
    waitForJob
  }
}

/** `Retry-After` in ms (seconds or an HTTP date), else an exponential backoff with jitter. */
function retryDelay (response: Response, attempt: number, baseDelayMs: number): number {
  const header = response.headers.get('retry-after')?.trim()
  if (header && /^\d+$/.test(header)) return Number(header) * 1000
  const date = header ? Date.parse(header) : NaN
  if (Number.isFinite(date)) return Math.max(0, date - Date.now())
  return Math.round(baseDelayMs * 2 ** attempt * (0.5 + Math.random() / 2))
}

function sleep (ms: number, signal?: AbortSignal | null): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason)
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', abort)
      resolve()
    }, ms)
    const abort = () => {
      clearTimeout(timer)
      reject(signal!.reason)
    }
    signal?.addEventListener('abort', abort, { once: true })
  })
}
