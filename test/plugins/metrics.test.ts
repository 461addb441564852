// Job metrics on /metrics (in-process queue and bee-queue), the standalone worker's metrics port, and the
// Grafana dashboard, whose every metric and label must exist in a real scrape.
import { readFileSync } from 'node:fs'
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { parse as parseYaml } from 'yaml'
import { buildApp } from '../../app.js'
import { build, testConfig } from '../helpers/build.js'
import { runEntry } from '../helpers/processes.js'
import { until } from '../helpers/wait.js'
import { freePort } from '../helpers/redis-server.js'

interface Sample { name: string, labels: Record<string, string>, value: number }

/** The Prometheus text format, one sample per line (`# HELP` / `# TYPE` lines give the families). */
function parse (text: string): { samples: Sample[], families: Map<string, string> } {
  const samples: Sample[] = []
  const families = new Map<string, string>()
  for (const line of text.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line)
    if (type) families.set(type[1]!, type[2]!)
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line)
    if (!sample) continue
    const labels = Object.fromEntries([...(sample[2] ?? '').matchAll(/([a-zA-Z_]\w*)="((?:[^"\\]|\\.)*)"/g)].map((m) => [m[1]!, m[2]!]))
    samples.push({ name: sample[1]!, labels, value: Number(sample[3]) })
  }
  return { samples, families }
}

/** The value of the one sample named `name` whose labels include `labels`; undefined when there is none. */
function value (text: string, name: string, labels: Record<string, string>): number | undefined {
  const found = parse(text).samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
  if (found.length > 1) throw new Error(`${found.length} samples of ${name} match ${JSON.stringify(labels)}`)
  return found[0]?.value
}

// The scrape token (METRICS_TOKEN): without it the API port serves no metrics (test/regressions/issue-18-operational-endpoints.test.ts).
const metricsToken = 'metrics-test-scrape-token-0123456789'
const scrapeHeaders = { authorization: `Bearer ${metricsToken}` }
const scrape = async (app: FastifyInstance) => (await app.inject({ method: 'GET', url: '/metrics', headers: scrapeHeaders })).body

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

for (const mode of ['bee-queue', 'in-process'] as const) {
  const overrides = mode === 'in-process' ? { REDIS_URL: '' } : {}

  t.test(`getMetrics (${mode}) › valid › jobs are counted by outcome and timed: success, retry, then failed for good`, async (t) => {
    const app = await build(t, { ...overrides, METRICS_TOKEN: metricsToken })
    app.queue.define(
      { family: 'mail', name: 'sendsFine', handle: async () => { await sleep(60) } },
      { family: 'mail', name: 'neverWorks', handle: async () => { throw new Error('SMTP says no') } }
    )
    await app.queue.enqueue({ family: 'mail', name: 'sendsFine' }, {})
    // One retry: the first attempt is a `retry`, the second (last) a `failed`.
    await app.queue.enqueue({ family: 'mail', name: 'neverWorks' }, {}, { retries: 1 })
    const before = await scrape(app)
    t.equal(value(before, 'jobs_processed_total', { job_name: 'sendsFine' }), undefined, 'nothing counted before the worker runs')

    app.queue.startWorker(2)
    t.ok(await until(async () => value(await scrape(app), 'jobs_processed_total', { job_name: 'neverWorks', outcome: 'failed' }) === 1, 15_000), 'the last attempt failed')
    const body = await scrape(app)

    const processed = (job: string, outcome: string) => value(body, 'jobs_processed_total', { queue: 'mail', job_name: job, outcome })
    t.equal(processed('sendsFine', 'success'), 1)
    t.equal(processed('sendsFine', 'failed'), undefined)
    t.equal(processed('neverWorks', 'retry'), 1, 'the first attempt, retried')
    t.equal(processed('neverWorks', 'failed'), 1, 'the second attempt, the last')
    t.equal(processed('neverWorks', 'success'), undefined)

    t.equal(value(body, 'job_duration_seconds_count', { queue: 'mail', job_name: 'sendsFine' }), 1)
    t.equal(value(body, 'job_duration_seconds_count', { queue: 'mail', job_name: 'neverWorks' }), 2, 'every attempt is timed')
    t.ok(value(body, 'job_duration_seconds_sum', { queue: 'mail', job_name: 'sendsFine' })! >= 0.05, 'the time the handler ran')
    t.equal(value(body, 'job_duration_seconds_bucket', { queue: 'mail', job_name: 'sendsFine', le: '0.05' }), 0)
    t.equal(value(body, 'job_duration_seconds_bucket', { queue: 'mail', job_name: 'sendsFine', le: '+Inf' }), 1)
    t.equal(value(body, 'queue_jobs', { queue: 'mail', state: 'failed' }), 1, 'the queue depth shows the failed job')
  })
}

t.test('getMetrics › valid › a job the worker does not know is counted as failed under its name', async (t) => {
  const app = await build(t, { REDIS_URL: '', METRICS_TOKEN: metricsToken })
  await app.queue.enqueue({ family: 'logs', name: 'fromANewerRelease' }, {}, { retries: 0 })
  app.queue.startWorker(1)
  t.ok(await until(async () => value(await scrape(app), 'jobs_processed_total', { queue: 'logs', job_name: 'fromANewerRelease', outcome: 'failed' }) === 1))
})

t.test('worker › WORKER_METRICS_PORT serves the standalone worker\'s job metrics at /metrics, behind METRICS_TOKEN', async (t) => {
  const config = await testConfig(t)
  const port = await freePort()
  const { child, waitFor, exited } = runEntry(t, 'worker.ts', {
    NODE_ENV: 'test',
    LOG_LEVEL: 'info',
    WORKER_METRICS_PORT: String(port),
    METRICS_TOKEN: metricsToken,
    DATABASE_URL: config.db.url!,
    REDIS_URL: config.redis.url!,
    REDIS_PREFIX: config.redis.prefix
  })
  t.ok(await waitFor(/worker started/), 'worker started')
  const metricsUrl = `http://127.0.0.1:${port}/metrics`

  const web = await buildApp(config, { logger: false })
  t.teardown(() => web.close())
  await web.queue.enqueue({ family: 'cache-purge', name: 'purgeTags' }, { tags: ['apps'] })
  const counted = () => fetch(metricsUrl, { headers: scrapeHeaders }).then((r) => r.text()).then((body) =>
    value(body, 'jobs_processed_total', { queue: 'cache-purge', job_name: 'purgeTags', outcome: 'success' }) === 1, () => false)
  t.ok(await until(counted, 20_000), 'the job the worker ran is on its metrics port')

  const res = await fetch(metricsUrl, { headers: scrapeHeaders })
  t.equal(res.status, 200)
  t.match(res.headers.get('content-type'), /^text\/plain/)
  const body = await res.text()
  t.equal(value(body, 'job_duration_seconds_count', { queue: 'cache-purge', job_name: 'purgeTags' }), 1)
  t.ok(value(body, 'process_resident_memory_bytes', {})! > 0, 'the process metrics too')
  t.notOk(parse(body).samples.some((s) => s.name === 'http_requests_total'), 'no HTTP requests: the worker serves no API')
  t.equal((await fetch(`http://127.0.0.1:${port}/v1/regions`)).status, 404, 'nothing else is served there')
  for (const headers of [{}, { authorization: `Bearer ${metricsToken}x` }, { authorization: metricsToken }] as Array<Record<string, string>>) {
    const refused = await fetch(metricsUrl, { headers })
    t.equal(refused.status, 401, `${JSON.stringify(headers)}: 401`)
    t.notMatch(await refused.text(), /jobs_processed_total/)
  }

  child.kill('SIGTERM')
  t.equal(await exited, 0)
  t.equal(await fetch(metricsUrl).then(() => 'answered', () => 'refused'), 'refused', 'the port closes with the worker')
})

// ---- The dashboard ----

interface Panel { title: string, type: string, targets?: Array<{ expr: string, legendFormat?: string }> }

// Labels Prometheus adds to every scraped series (the dashboard filters on the scrape job).
const targetLabels = new Set(['job', 'instance'])
const promqlWords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan'])

/** The metric selectors of a PromQL expression (name and the labels it matches on), and its grouping labels. */
function promql (expr: string) {
  const noStrings = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""').replace(/\[[^\]]*\]/g, '')
  const selectors: Array<{ name: string, labels: string[] }> = []
  for (const m of noStrings.matchAll(/([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{([^}]*)\}/g)) {
    selectors.push({ name: m[1]!, labels: [...m[2]!.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)].map((l) => l[1]!) })
  }
  const grouping = [...noStrings.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap((m) => m[1]!.split(',').map((l) => l.trim()).filter(Boolean))
  const bare = noStrings.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '').replace(/\{[^}]*\}/g, '')
  for (const m of bare.matchAll(/(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:]|\s*\()/g)) {
    if (!promqlWords.has(m[1]!.toLowerCase()) && !selectors.some((s) => s.name === m[1])) selectors.push({ name: m[1]!, labels: [] })
  }
  return { selectors, grouping }
}

t.test('dashboard › every metric and label its panels query is in a real scrape', async (t) => {
  const dashboard = JSON.parse(readFileSync(new URL('../../deploy/grafana/fractal-dashboard.json', import.meta.url), 'utf8')) as { uid: string, panels: Panel[] }
  t.equal(dashboard.uid, 'fractal-webserver')

  // A scrape with a sample in every family: a request, and a job that ran.
  const app = await build(t, { METRICS_TOKEN: metricsToken })
  await app.inject({ method: 'GET', url: '/v1/regions' })
  app.queue.define({ family: 'mail', name: 'noop', handle: async () => {} })
  await app.queue.enqueue({ family: 'mail', name: 'noop' }, {})
  app.queue.startWorker(1)
  t.ok(await until(async () => value(await scrape(app), 'jobs_processed_total', { job_name: 'noop' }) === 1))
  const { samples } = parse(await scrape(app))
  const labelsOf = new Map<string, Set<string>>()
  for (const s of samples) {
    const set = labelsOf.get(s.name) ?? new Set(targetLabels)
    for (const l of Object.keys(s.labels)) set.add(l)
    labelsOf.set(s.name, set)
  }

  const queried = dashboard.panels.filter((p) => p.type !== 'row')
  t.ok(queried.length >= 10, 'the panels are there')
  const used = new Set<string>()
  for (const panel of queried) {
    t.ok(panel.targets?.length, `${panel.title}: has queries`)
    for (const target of panel.targets ?? []) {
      const { selectors, grouping } = promql(target.expr)
      t.ok(selectors.length > 0, `${panel.title}: queries a metric`)
      const available = new Set(selectors.flatMap((s) => [...(labelsOf.get(s.name) ?? [])]))
      for (const s of selectors) {
        used.add(s.name)
        t.ok(labelsOf.has(s.name), `${panel.title}: ${s.name} is exported`)
        for (const label of s.labels) t.ok(labelsOf.get(s.name)?.has(label), `${panel.title}: ${s.name} has label ${label}`)
      }
      for (const label of grouping) t.ok(available.has(label) && !targetLabels.has(label), `${panel.title}: grouped by ${label}, a label of its metrics`)
      for (const [, label] of (target.legendFormat ?? '').matchAll(/\{\{\s*(\w+)\s*\}\}/g)) {
        t.ok(grouping.length === 0 ? available.has(label!) : grouping.includes(label!), `${panel.title}: legend label ${label} is in the result`)
      }
    }
  }
  // What the issue asks the dashboard to show.
  for (const name of ['http_requests_total', 'http_request_duration_seconds_bucket', 'queue_jobs', 'jobs_processed_total', 'job_duration_seconds_bucket',
    'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
    t.ok(used.has(name), `the dashboard shows ${name}`)
  }
})

t.test('deploy › the Prometheus example scrapes every job with the scrape token (METRICS_TOKEN)', async (t) => {
  const config = parseYaml(readFileSync(new URL('../../deploy/prometheus/prometheus.yml', import.meta.url), 'utf8')) as { scrape_configs: Array<Record<string, any>> }
  t.same(config.scrape_configs.map((job) => job.job_name), ['fractal-web', 'fractal-worker'])
  for (const job of config.scrape_configs) {
    t.equal(job.metrics_path, '/metrics', `${job.job_name}: /metrics`)
    t.match(job.authorization, { type: 'Bearer', credentials_file: /^\/\S+$/ }, `${job.job_name}: the token from a file`)
  }
})

t.test('dashboard › the PromQL reader finds metric names, matchers and grouping labels', async (t) => {
  t.same(promql('histogram_quantile(0.95, sum by (le, queue) (rate(job_duration_seconds_bucket{job=~"$job", outcome!="x"}[$__rate_interval])))'), {
    selectors: [{ name: 'job_duration_seconds_bucket', labels: ['job', 'outcome'] }],
    grouping: ['le', 'queue']
  })
  t.same(promql('sum(rate(a_total[5m])) / sum(rate(b_total{x="1"}[5m]))').selectors.map((s) => s.name).sort(), ['a_total', 'b_total'])
  t.same(promql('process_resident_memory_bytes').selectors, [{ name: 'process_resident_memory_bytes', labels: [] }])
})
