// OpenTelemetry traces: HTTP and Fastify routes, pg, Redis (ioredis, and node-redis under bee-queue), the AWS SDK
// v3 and one span per job attempt, sent to an OTLP/HTTP collector. Only when an endpoint is configured: otherwise
// not one module of the SDK is loaded, so requests pay nothing for it.
// Not a Fastify plugin: the instrumentations patch pg, ioredis, redis and the AWS SDK as they load, so
// server.ts and worker.ts start this first and import the app after it.
import type { FastifyInstance } from 'fastify'
import type { Config } from './config.js'

export interface Telemetry {
  /** Puts each job attempt of this app's queue in a span `job <family>.<name>`, parent of the job's own spans. */
  traceJobs (app: FastifyInstance): void
  /** Ends the spans in flight and sends what is buffered (after app.close(), so the last jobs' spans go too). */
  shutdown (): Promise<void>
}

// Probes and scrapes come every few seconds and say nothing a trace would.
const untraced = new Set(['/healthz', '/readyz', '/metrics'])

// The built-in list of the HTTP instrumentation, and the parameters that app.ts keeps out of the logs.
const redactedQueryParams = [
  'sig', 'Signature', 'AWSAccessKeyId', 'X-Goog-Signature', 'X-Amz-Signature', 'X-Amz-Credential', 'X-Amz-Security-Token',
  'code', 'state', 'token', 'access_token', 'refresh_token', 'id_token', 'client_secret', 'code_verifier'
]

/**
 * Starts tracing when `config.telemetry.tracesUrl` is set, and resolves to null (having loaded nothing) otherwise.
 * Call it before the app (and so fastify, pg, ioredis, bee-queue and the AWS SDK) is imported.
 */
export async function startTelemetry (config: Config, defaultServiceName: string): Promise<Telemetry | null> {
  const { tracesUrl, serviceName } = config.telemetry
  if (!tracesUrl) return null

  const [
    api, { NodeTracerProvider, BatchSpanProcessor }, { defaultResource, detectResources, envDetector, resourceFromAttributes },
    { ATTR_SERVICE_NAME }, { OTLPTraceExporter }, { registerInstrumentations }, { HttpInstrumentation },
    { FastifyOtelInstrumentation }, { PgInstrumentation }, { IORedisInstrumentation }, { RedisInstrumentation }, { AwsInstrumentation }
  ] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/semantic-conventions'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/instrumentation'),
    import('@opentelemetry/instrumentation-http'),
    import('@fastify/otel'),
    import('@opentelemetry/instrumentation-pg'),
    import('@opentelemetry/instrumentation-ioredis'),
    import('@opentelemetry/instrumentation-redis'),
    import('@opentelemetry/instrumentation-aws-sdk')
  ])

  const provider = new NodeTracerProvider({
    // OTEL_RESOURCE_ATTRIBUTES adds to the resource; the service name is ours unless OTEL_SERVICE_NAME says otherwise.
    resource: defaultResource()
      .merge(detectResources({ detectors: [envDetector] }))
      .merge(resourceFromAttributes({ [ATTR_SERVICE_NAME]: serviceName ?? defaultServiceName })),
    spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: tracesUrl }))]
  })
  // The global provider, AsyncLocalStorage context and W3C trace-context propagation (traceparent in and out).
  provider.register()

  const path = (url: string | undefined) => url?.split('?')[0] ?? ''
  registerInstrumentations({
    tracerProvider: provider,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => untraced.has(path(request.url)),
        redactedQueryParams,
        redactedQueryParamsServer: redactedQueryParams
      }),
      // Registers itself on every Fastify instance as it is created; names the HTTP span after the route template.
      // A request span and a handler span, not one per hook: those would triple the spans of a request (and
      // the CPU it costs, measured) for little to read; the pg and Redis spans show where a hook spent its time.
      new FastifyOtelInstrumentation({ registerOnInitialization: true, instrumentHooks: false, ignorePaths: (route) => untraced.has(route.url) }),
      // Outside a request or a job, the queue's polling and the schedules' ticks would each be a trace of their own.
      new PgInstrumentation({ requireParentSpan: true }),
      new IORedisInstrumentation({ requireParentSpan: true }),
      new RedisInstrumentation({ requireParentSpan: true }),
      new AwsInstrumentation({ suppressInternalInstrumentation: true })
    ]
  })

  const tracer = api.trace.getTracer('fractal-webserver')
  return {
    traceJobs (app) {
      app.queue.aroundJob((job, run) => tracer.startActiveSpan(`job ${job.family}.${job.name}`, {
        kind: api.SpanKind.CONSUMER,
        // A job is a trace of its own, not a child of whatever span was active when the worker picked it up.
        root: true,
        attributes: {
          'messaging.system': app.queue.kind,
          'messaging.operation.type': 'process',
          'messaging.destination.name': job.family,
          'messaging.message.id': job.id,
          'job.name': job.name,
          'job.last_attempt': job.lastAttempt
        }
      }, async (span) => {
        try {
          return await run()
        } catch (err) {
          span.recordException(err as Error)
          span.setStatus({ code: api.SpanStatusCode.ERROR, message: (err as Error).message })
          throw err
        } finally {
          span.end()
        }
      }))
    },
    shutdown: () => provider.shutdown()
  }
}
