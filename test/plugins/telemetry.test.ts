// Tracing as production runs it: server.ts in a child process (so the instrumentations load before pg, ioredis,
// bee-queue's redis and the AWS SDK, as they do there), its spans POSTed to an OTLP/HTTP receiver of ours.
import { once } from 'node:events'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer as createHttpServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { buildApp } from '../../app.js'
import { loadConfig, type Config } from '../../plugins/config.js'
import { testConfig } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { s3rverCredentials, startS3 } from '../helpers/s3.js'
import { runEntry } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'
import { freePort } from '../helpers/redis-server.js'

// Three server and worker processes start here, each loading the whole app: more than the default file budget.
t.setTimeout(300_000)

type Test = { teardown (fn: () => unknown): void }

interface Span {
  traceId: string
  spanId: string
  parentSpanId?: string
  name: string
  kind: number
  scope: string
  service: unknown
  attributes: Record<string, unknown>
}
const SERVER = 2
const CONSUMER = 5

interface OtlpValue { stringValue?: string, intValue?: string | number, boolValue?: boolean, doubleValue?: number }
interface OtlpAttribute { key: string, value: OtlpValue }
interface OtlpTraces {
  resourceSpans: Array<{
    resource: { attributes: OtlpAttribute[] }
    scopeSpans: Array<{ scope: { name: string }, spans: Array<Omit<Span, 'scope' | 'service' | 'attributes'> & { attributes?: OtlpAttribute[] }> }>
  }>
}

const attributes = (list: OtlpAttribute[] = []) =>
  Object.fromEntries(list.map(({ key, value }) => [key, value.stringValue ?? value.boolValue ?? value.doubleValue ?? (value.intValue === undefined ? undefined : Number(value.intValue))]))

/** An OTLP/HTTP collector: every POST to /v1/traces is decoded (JSON) into flat spans. */
async function startReceiver (t: Test, port = 0) {
  const spans: Span[] = []
  const posts: Array<{ url: string, contentType: string }> = []
  const server = createHttpServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      posts.push({ url: req.url ?? '', contentType: req.headers['content-type'] ?? '' })
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as OtlpTraces
      for (const rs of body.resourceSpans) {
        const service = attributes(rs.resource.attributes)['service.name']
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) spans.push({ ...s, scope: ss.scope.name, service, attributes: attributes(s.attributes) })
        }
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}')
    })
  })
  server.listen(port, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => server.close(resolve)))
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, spans, posts }
}

/** `tsx server.ts --with-worker` on this test's database and Redis prefix, ready to serve. */
async function startServer (t: Test, config: Config, env: Record<string, string>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'fractal-otel-'))
  t.teardown(() => rmSync(dataDir, { recursive: true, force: true }))
  const port = await freePort()
  const { child, output, exited } = runEntry(t, 'server.ts', {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    PORT: String(port),
    DATA_DIR: dataDir,
    DATABASE_URL: config.db.url!,
    REDIS_URL: config.redis.url!,
    REDIS_PREFIX: config.redis.prefix,
    JWT_PRIVATE_KEY: config.jwt.privateKey!,
    JWT_PUBLIC_KEY: config.jwt.publicKey!,
    ...env
  }, ['--with-worker'])
  const base = `http://127.0.0.1:${port}`
  const ready = await until(() => fetch(`${base}/readyz`).then((r) => r.ok, () => false), 60_000)
  if (!ready) throw new Error(`server did not start:\n${output()}`)
  return {
    base,
    output,
    /** SIGTERM, as an orchestrator stops it; resolves with the exit code. */
    async stop () {
      child.kill('SIGTERM')
      return await exited as number
    }
  }
}

const traceId = '4bf92f3577b34da6a3ce929d0e0e4736'
const traceparent = `00-${traceId}-00f067aa0ba902b7-01`

t.test('tracing › a request and the job it queues are traced through HTTP, pg, Redis and S3, and flushed on shutdown', async (t) => {
  const config = await testConfig(t)
  const receiver = await startReceiver(t)
  const s3 = await startS3(t)
  const server = await startServer(t, config, {
    ...s3.env,
    AWS_ACCESS_KEY_ID: s3rverCredentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3rverCredentials.secretAccessKey,
    OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
    // Nothing leaves on a timer during the test: what arrives was sent by the shutdown.
    OTEL_BSP_SCHEDULE_DELAY: '600000'
  })
  t.match(server.output(), new RegExp(`"url":"${receiver.url}/v1/traces".*tracing: spans go to the OTLP collector`))

  const regions = await fetch(`${server.base}/v1/regions`, { headers: { traceparent } })
  t.equal(regions.status, 200)

  // A log upload: the request spools it in pg and queues a job (bee-queue, node-redis); the worker in the same
  // process stores it in S3 and marks the rows.
  const web = await buildApp(config, { logger: false })
  t.teardown(() => web.close())
  const user = await given(web).signedIn()
  const upload = await fetch(`${server.base}/v1/logs?sender=client`, { method: 'POST', headers: { ...user.headers, 'content-type': 'text/plain' }, body: 'frame dropped\n' })
  t.equal(upload.status, 202)
  const logId = ((await upload.json()) as { id: string }).id
  t.ok(await until(async () => (await web.db.selectFrom('log_upload').select('status').where('id', '=', logId).executeTakeFirstOrThrow()).status === 'stored', 20_000), 'the job stored the log')
  await fetch(`${server.base}/healthz`)
  t.equal(receiver.posts.length, 0, 'nothing exported before the shutdown')

  t.equal(await server.stop(), 0)
  t.ok(receiver.posts.length > 0, 'the shutdown flushed the spans')
  t.ok(receiver.posts.every((p) => p.url === '/v1/traces' && p.contentType.startsWith('application/json')), 'OTLP/HTTP JSON to /v1/traces')
  const spans = receiver.spans
  t.ok(spans.every((s) => s.service === 'fractal-webserver'), 'service.name defaults to fractal-webserver')

  // GET /v1/regions: the incoming traceparent is continued; the server span carries the route template.
  const inTrace = spans.filter((s) => s.traceId === traceId)
  const httpSpan = inTrace.find((s) => s.scope === '@opentelemetry/instrumentation-http' && s.kind === SERVER)
  t.match(httpSpan, { name: 'GET /v1/regions', parentSpanId: '00f067aa0ba902b7', attributes: { 'http.route': '/v1/regions', 'http.response.status_code': 200 } })
  t.ok(inTrace.some((s) => s.scope === '@fastify/otel' && s.attributes['http.route'] === '/v1/regions'), 'a Fastify span for the route')
  t.ok(inTrace.some((s) => s.scope === '@opentelemetry/instrumentation-pg' && /from "region"/.test(String(s.attributes['db.query.text']))), 'the pg query')
  t.ok(inTrace.some((s) => s.scope === '@opentelemetry/instrumentation-ioredis' && s.attributes['db.system.name'] === 'redis'), 'an ioredis command')

  // POST /v1/logs: a route with a parameterless template, and bee-queue's enqueue (node-redis) in its trace.
  const postSpan = spans.find((s) => s.scope === '@opentelemetry/instrumentation-http' && s.kind === SERVER && s.attributes['http.route'] === '/v1/logs')
  t.ok(postSpan, 'the upload request has its server span')
  t.ok(spans.some((s) => s.traceId === postSpan?.traceId && s.scope === '@opentelemetry/instrumentation-redis'), 'the enqueue through node-redis')
  t.notOk(spans.some((s) => s.attributes['url.path'] === '/healthz' || s.attributes['http.route'] === '/readyz'), 'probes are not traced')

  // The job: one span per attempt, parent of its pg queries and its S3 PutObject.
  const job = spans.find((s) => s.name === 'job logs.uploadLog')
  t.match(job, { kind: CONSUMER, attributes: { 'messaging.system': 'bee-queue', 'messaging.destination.name': 'logs', 'job.name': 'uploadLog' } })
  const inJob = spans.filter((s) => s.traceId === job?.traceId)
  t.ok(inJob.some((s) => s.scope === '@opentelemetry/instrumentation-aws-sdk' && s.attributes['rpc.method'] === 'PutObject' && s.attributes['rpc.service'] === 'S3'), 'the S3 PutObject')
  t.ok(inJob.some((s) => s.scope === '@opentelemetry/instrumentation-pg' && /update "log_upload"/.test(String(s.attributes['db.query.text']))), 'the pg update')
})

t.test('tracing › the standalone worker traces its jobs as fractal-worker', async (t) => {
  const config = await testConfig(t)
  const receiver = await startReceiver(t)
  const { child, waitFor, exited } = runEntry(t, 'worker.ts', {
    NODE_ENV: 'test',
    LOG_LEVEL: 'debug',
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `${receiver.url}/v1/traces`,
    DATABASE_URL: config.db.url!,
    REDIS_URL: config.redis.url!,
    REDIS_PREFIX: config.redis.prefix
  })
  t.ok(await waitFor(/worker started/), 'worker started')

  const web = await buildApp(config, { logger: false })
  t.teardown(() => web.close())
  await web.queue.enqueue({ family: 'cache-purge', name: 'purgeTags' }, { tags: ['apps'] }, { jobId: 'traced-purge' })
  t.ok(await waitFor(/"job":"traced-purge".*job done/, 20_000), 'the job ran')
  child.kill('SIGTERM')
  t.equal(await exited, 0)

  const job = receiver.spans.find((s) => s.name === 'job cache-purge.purgeTags')
  t.match(job, { service: 'fractal-worker', kind: CONSUMER, attributes: { 'messaging.message.id': 'traced-purge', 'job.name': 'purgeTags' } })
  t.notOk(job?.parentSpanId, 'a job is the root of its trace')
})

t.test('tracing › without an OTLP endpoint nothing is loaded and nothing is sent, not even to the default port', async (t) => {
  const config = await testConfig(t)
  // 4318 is where the exporter would send by default: listen there to see it if it ever did.
  const receiver = await startReceiver(t, 4318).catch(() => null)
  if (!receiver) t.comment('port 4318 is taken: only the log is checked')
  // NODE_DEBUG=module lists every CommonJS module the process loads (the SDK's packages are CommonJS).
  const server = await startServer(t, config, { OTEL_SERVICE_NAME: 'half-configured', OTEL_BSP_SCHEDULE_DELAY: '10', NODE_DEBUG: 'module' })

  t.equal((await fetch(`${server.base}/v1/regions`, { headers: { traceparent } })).status, 200)
  t.equal(await server.stop(), 0, 'exits 0 on SIGTERM', { output: server.output().split('\n').filter((l) => !/^MODULE /.test(l)).slice(-30).join('\n') })
  t.notMatch(server.output(), /tracing: spans go/)
  t.ok(/node_modules\/pg\/lib\/client\.js/.test(server.output()), 'the debug output lists the modules loaded')
  // @opentelemetry/api, the no-op facade, is prom-client's (for exemplars) and loads either way.
  const sdk = /node_modules\/(@opentelemetry\/(?!api\/)[\w-]+|@fastify\/otel)\//.exec(server.output())
  t.equal(sdk?.[1], undefined, 'no module of the SDK or of an instrumentation was loaded')
  if (receiver) t.equal(receiver.posts.length, 0, 'no exporter traffic')
})

t.test('tracing › config › an endpoint turns tracing on, a traces endpoint wins, OTEL_SDK_DISABLED turns it off', async (t) => {
  t.same(loadConfig({}).telemetry, { tracesUrl: null, serviceName: null })
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).telemetry.tracesUrl, 'http://collector:4318/v1/traces')
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4318/x' }).telemetry.tracesUrl, 'http://traces:4318/x')
  t.equal(loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318', OTEL_SDK_DISABLED: 'true' }).telemetry.tracesUrl, null)
  t.throws(() => loadConfig({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' }), /OTEL_EXPORTER_OTLP_ENDPOINT must match format "uri"/)
})
