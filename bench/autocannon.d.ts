// The part of autocannon's programmatic API bench/run.ts uses: the package ships no types and
// @types/autocannon is not a dependency.
declare module 'autocannon' {
  namespace autocannon {
    interface Request {
      method?: string
      path?: string
      headers?: Record<string, string>
      body?: string | Buffer
      /** Called before each request is built; returns the request to send. */
      setupRequest?: (request: Request, context: Record<string, unknown>) => Request | null | undefined
    }

    interface Options {
      url: string
      method?: string
      headers?: Record<string, string>
      body?: string | Buffer
      /** Concurrent connections (default 10). */
      connections?: number
      /** Seconds (default 10). */
      duration?: number
      /** Seconds before a request counts as a timeout (default 10). */
      timeout?: number
      pipelining?: number
      requests?: Request[]
    }

    interface Histogram {
      average: number
      mean: number
      stddev: number
      min: number
      max: number
      total: number
      p50: number
      p90: number
      p97_5: number
      p99: number
      totalCount?: number
      sent?: number
    }

    interface Result {
      url: string
      connections: number
      duration: number
      errors: number
      timeouts: number
      non2xx: number
      resets: number
      '1xx': number
      '2xx': number
      '3xx': number
      '4xx': number
      '5xx': number
      statusCodeStats: Record<string, { count: number }>
      latency: Histogram
      requests: Histogram
      throughput: Histogram
    }

    /** An EventEmitter that is also thenable: resolves with the result. */
    interface Instance extends PromiseLike<Result> {
      stop (): void
    }
  }

  function autocannon (options: autocannon.Options): autocannon.Instance

  export = autocannon
}
