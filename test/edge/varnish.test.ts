// The app behind a real Varnish running deploy/varnish/default.vcl (Debian `varnish` + `varnish-modules`):
// what is stored, what is passed, what a purge drops, and the stale copy served while the app fails.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http'
import { createServer, type AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { buildApp } from '../../app.js'
import { testConfig } from '../helpers/build.js'
import { bearer, given } from '../helpers/given.js'
import { settle, until } from '../helpers/wait.js'

const vclSource = fileURLToPath(new URL('../../deploy/varnish/default.vcl', import.meta.url))
// In the test copy of the VCL only: /v1/status lives 1 s at the edge instead of the 10 s the app declares,
// so that a stale copy shows within the test. It runs before the file's own vcl_backend_response.
const statusTtl = 1
const testOnlyOverride = `sub vcl_backend_response {
    if (bereq.url == "/v1/status") {
        set beresp.http.Surrogate-Control = "max-age=${statusTtl}";
    }
}

`

const varnishd = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin']
  .filter(Boolean).map((dir) => join(dir, 'varnishd')).find((path) => existsSync(path))

interface Answer { status: number, headers: IncomingHttpHeaders, body: string }
interface Send { method?: string, headers?: Record<string, string>, body?: unknown, localAddress?: string }

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** One HTTP request on its own connection (`localAddress` picks the client address Varnish sees). */
function send (port: number, path: string, options: Send = {}): Promise<Answer> {
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body)
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: '127.0.0.1',
      port,
      path,
      method: options.method ?? 'GET',
      agent: false,
      localAddress: options.localAddress,
      headers: { ...(payload ? { 'content-type': 'application/json' } : {}), ...options.headers }
    }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString() }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(payload)
  })
}

if (!varnishd) {
  t.plan(0, 'varnishd not found on PATH or in /usr/sbin: install Debian varnish and varnish-modules to run the edge tests')
} else {
  await main(varnishd)
}

async function main (varnishd: string): Promise<void> {
  const workdir = mkdtempSync(join(tmpdir(), 'fractal-varnish-'))
  t.teardown(() => rmSync(workdir, { recursive: true, force: true }))
  const varnishPort = await freePort()

  // The origin: counts what reaches it, and fails /v1/status on demand.
  const corsOrigins = ['https://app.fractal.co', 'https://admin.fractal.co'] as const
  const config = await testConfig(t, {
    CACHE_PURGER: 'varnish',
    VARNISH_PURGE_URLS: `http://127.0.0.1:${varnishPort}`,
    CACHE_PURGE_TIMEOUT_MS: '2000',
    CORS_ORIGINS: corsOrigins.join(',')
  })
  const app = await buildApp(config, { logger: false })
  t.teardown(() => app.close())
  const origin = { seen: new Map<string, number>(), cookies: [] as Array<string | undefined>, failStatus: false }
  app.addHook('onRequest', async (request, reply) => {
    origin.seen.set(request.url, (origin.seen.get(request.url) ?? 0) + 1)
    origin.cookies.push(request.headers.cookie)
    if (origin.failStatus && request.url === '/v1/status') {
      return reply.code(500).type('application/problem+json').send({ type: 'https://docs.fractal.co/problems/internal', title: 'Internal error', status: 500, code: 'internal' })
    }
  })
  // The test's stand-in for a route that sets a cookie (the app sets none): asked for by a request header.
  app.addHook('onSend', async (request, reply, payload) => {
    if (request.headers['x-test-set-cookie']) reply.header('set-cookie', 'tracking=1; Path=/')
    return payload
  })
  await app.ready()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const appPort = (app.server.address() as AddressInfo).port
  // The purge jobs run here, as in a worker process.
  app.queue.startWorker(1)

  // The test copy of the VCL: our backend port (the host is already 127.0.0.1), and the override above.
  const source = readFileSync(vclSource, 'utf8')
  const originPattern = 'req.http.Origin !~ "^https://app\\.fractal\\.co$"'
  for (const anchor of ['.host = "127.0.0.1";', '.port = "3000";', '\nsub vcl_backend_response {', originPattern]) {
    if (!source.includes(anchor)) throw new Error(`deploy/varnish/default.vcl no longer contains ${JSON.stringify(anchor)}`)
  }
  const vcl = join(workdir, 'test.vcl')
  writeFileSync(vcl, source
    .replace('.port = "3000";', `.port = "${appPort}";`)
    .replace('\nsub vcl_backend_response {', `\n${testOnlyOverride}sub vcl_backend_response {`)
    .replace(originPattern, `req.http.Origin !~ "^(${corsOrigins.map((o) => o.replaceAll('.', '\\.')).join('|')})$"`))

  const args = ['-j', 'none', '-n', join(workdir, 'n'), '-f', vcl]
  // Compile first: a missing vmod (varnish-modules) is a skip, any other error a failure.
  const compiled = spawnSync(varnishd, ['-C', ...args], { encoding: 'utf8' })
  if (compiled.status !== 0) {
    if (/xkey/i.test(compiled.stderr) && /vmod/i.test(compiled.stderr)) {
      t.plan(0, 'vmod xkey not found: install Debian varnish-modules to run the edge tests')
      return
    }
    throw new Error(`the VCL does not compile:\n${compiled.stderr}`)
  }

  // -j none: no privilege separation (we may run as root, and the work dir is ours); -T none: no CLI port.
  const child: ChildProcess = spawn(varnishd, [
    '-F', ...args, '-a', `127.0.0.1:${varnishPort}`, '-T', 'none', '-s', 'malloc,32m',
    '-p', 'thread_pools=1', '-p', 'thread_pool_min=5', '-p', 'thread_pool_max=50'
  ], { stdio: ['ignore', 'pipe', 'pipe'] })
  let varnishLog = ''
  child.stdout!.on('data', (chunk: Buffer) => { varnishLog += chunk.toString() })
  child.stderr!.on('data', (chunk: Buffer) => { varnishLog += chunk.toString() })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  // Should this process end without its teardown (a timeout), Varnish must not outlive it.
  const orphan = () => { child.kill('SIGTERM') }
  process.once('exit', orphan)
  t.teardown(async () => {
    process.off('exit', orphan)
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  })
  const up = await until(async () => {
    if (child.exitCode !== null) return false
    return (await send(varnishPort, '/healthz').catch(() => null))?.status === 200
  }, 20000)
  if (!up) throw new Error(`varnishd did not start:\n${varnishLog}`)

  const edge = (path: string, options?: Send) => send(varnishPort, path, options)
  const seen = (path: string) => origin.seen.get(path) ?? 0
  /** Forgets everything at the edge, so each test starts cold. */
  const purgeAll = async () => {
    const res = await edge('/', { method: 'PURGE', headers: { 'x-purge-all': '1' } })
    if (res.status !== 200) throw new Error(`purge-all answered ${res.status}: ${res.body}`)
  }
  /** Until every queued edge purge has been sent (the worker runs in this process). */
  const purgesSent = () => until(async () => {
    const c = await app.queue.counts('cache-purge')
    return c.waiting + c.active + c.delayed === 0
  }, 10000)

  t.test('edge › varnish › a second public read is a HIT that never reaches the app', async (t) => {
    await purgeAll()
    await given(app).app({ id: 'edge-hit' })
    const before = seen('/v1/apps')
    const first = await edge('/v1/apps')
    const second = await edge('/v1/apps')
    t.equal(first.status, 200)
    t.equal(first.headers['x-cache'], 'MISS')
    t.equal(second.status, 200)
    t.equal(second.headers['x-cache'], 'HIT')
    t.equal(seen('/v1/apps') - before, 1, 'the app answered once')
    t.equal(second.body, first.body)
    t.equal(second.headers.etag, first.headers.etag)
    t.match(second.headers['cache-control'], /s-maxage=300/, "the app's Cache-Control goes on to the client")
    t.ok(second.headers.age !== undefined, 'Age is sent')
    for (const name of ['xkey', 'surrogate-key', 'surrogate-control', 'x-fr-swr']) t.notOk(second.headers[name], `no ${name} for clients`)

    const notModified = await edge('/v1/apps', { headers: { 'if-none-match': first.headers.etag as string } })
    t.equal(notModified.status, 304, 'a conditional read is answered by Varnish')
    t.equal(seen('/v1/apps') - before, 1, 'still one request at the app')
  })

  // Issue 18, item 9: the cached answer of one origin carried its Access-Control-Allow-Origin to every other.
  t.test('edge › varnish › CORS: origins reading one cached public read each get their own Access-Control-Allow-Origin, never another\'s', async (t) => {
    await purgeAll()
    await given(app).app({ id: 'edge-cors' })
    const [one, other] = corsOrigins
    const refused = 'https://evil.example'
    const callers: Array<[string | undefined, string | undefined]> = [[one, one], [other, other], [undefined, undefined], [refused, undefined]]
    // A 200 of the spec, a 404 (misses live 10 s at the edge), and a document served by plugins/docs.ts.
    for (const path of ['/v1/apps/edge-cors', '/v1/apps/edge-cors-none', '/openapi.json']) {
      for (const round of ['first', 'cached'] as const) {
        for (const [origin, expected] of callers) {
          const res = await edge(path, { headers: origin ? { origin } : {} })
          const who = `${path} ${round}, ${origin ?? 'no Origin'}`
          if (round === 'cached') t.equal(res.headers['x-cache'], 'HIT', `${who}: a HIT`)
          t.equal(res.headers['access-control-allow-origin'], expected, `${who}: Access-Control-Allow-Origin ${expected ?? 'absent'}`)
          t.match(res.headers.vary, /(^|,\s*)Origin(\s*,|$)/, `${who}: Vary names Origin (${res.headers.vary})`)
          if (!expected) t.notOk(res.headers['access-control-allow-credentials'] ?? res.headers['access-control-expose-headers'], `${who}: no other CORS header`)
        }
      }
    }
    const first = await edge('/v1/apps/edge-cors', { headers: { origin: one } })
    t.match(first.headers.vary, /Accept-Encoding/, 'and Accept-Encoding, which the policy names')
    const before = seen('/v1/apps/edge-cors')
    for (let i = 0; i < 5; i++) {
      const madeUp = await edge('/v1/apps/edge-cors', { headers: { origin: `https://made-up-${i}.example` } })
      t.equal(madeUp.headers['x-cache'], 'HIT', `made-up origin ${i}: the copy without CORS headers`)
      t.notOk(madeUp.headers['access-control-allow-origin'])
    }
    t.equal(seen('/v1/apps/edge-cors'), before, 'made-up origins add no copies and reach no app')
    const notModified = await edge('/v1/apps/edge-cors', { headers: { origin: other, 'if-none-match': first.headers.etag as string } })
    t.equal(notModified.status, 304)
    t.equal(notModified.headers['access-control-allow-origin'], other, 'a 304 from Varnish carries the asking origin')
  })

  t.test('edge › varnish › a region update purges exactly regions, apps and status', async (t) => {
    await purgeAll()
    const region = await given(app).region({ name: 'Before the update' })
    await edge('/v1/regions')
    await edge('/v1/apps')
    await edge('/v1/storage/providers')
    t.equal((await edge('/v1/regions')).headers['x-cache'], 'HIT', 'regions cached')
    t.equal((await edge('/v1/apps')).headers['x-cache'], 'HIT', 'apps cached')
    t.equal((await edge('/v1/storage/providers')).headers['x-cache'], 'HIT', 'storage providers cached')

    const res = await edge(`/v1/regions/${region.code}`, { method: 'PATCH', body: { name: 'After the update' }, headers: bearer(await given(app).token({ scopes: ['catalog:write'] })) })
    t.equal(res.status, 200, 'the PATCH went through Varnish to the app')
    t.ok(await purgesSent(), 'the purge job ran')
    t.equal((await app.queue.counts('cache-purge')).failed, 0, 'and Varnish accepted the purge')

    const regions = await edge('/v1/regions')
    t.equal(regions.headers['x-cache'], 'MISS', 'regions purged')
    t.match(regions.body, /After the update/)
    t.equal((await edge('/v1/apps')).headers['x-cache'], 'MISS', 'apps purged')
    t.equal((await edge('/v1/storage/providers')).headers['x-cache'], 'HIT', 'storage providers untouched')
  })

  t.test('edge › varnish › POST /v1/admin/cache/purge drops only the tags it names', async (t) => {
    await purgeAll()
    for (const path of ['/v1/regions', '/v1/storage/providers']) await edge(path)
    const res = await edge('/v1/admin/cache/purge', { method: 'POST', body: { tags: ['regions'] }, headers: bearer(await given(app).token({ role: 'admin', scopes: ['admin'] })) })
    t.equal(res.status, 202)
    t.same(JSON.parse(res.body), { purger: 'varnish', tags: ['regions'], everything: false })
    t.ok(await purgesSent(), 'the purge job ran')
    t.equal((await app.queue.counts('cache-purge')).failed, 0)
    t.equal((await edge('/v1/regions')).headers['x-cache'], 'MISS', 'regions purged')
    t.equal((await edge('/v1/storage/providers')).headers['x-cache'], 'HIT', 'storage providers untouched')
  })

  t.test('edge › varnish › PURGE: xkey-purge drops the objects of a tag, x-purge-all everything, anything else is 400', async (t) => {
    await purgeAll()
    await given(app).app({ id: 'edge-one' })
    await given(app).app({ id: 'edge-two' })
    for (const path of ['/v1/apps/edge-one', '/v1/apps/edge-two']) await edge(path)

    const one = await edge('/', { method: 'PURGE', headers: { 'xkey-purge': 'app:edge-one' } })
    t.equal(one.status, 200)
    t.same(JSON.parse(one.body), { purged: 1 }, 'one object carried app:edge-one')
    t.equal((await edge('/v1/apps/edge-one')).headers['x-cache'], 'MISS')
    t.equal((await edge('/v1/apps/edge-two')).headers['x-cache'], 'HIT', 'app:edge-two untouched')

    await edge('/v1/apps/edge-one')
    const both = await edge('/', { method: 'PURGE', headers: { 'xkey-purge': 'no-such-tag app:edge-one app:edge-two' } })
    t.same(JSON.parse(both.body), { purged: 2 }, 'a list of tags: one object each')
    t.equal((await edge('/v1/apps/edge-two')).headers['x-cache'], 'MISS')

    await edge('/v1/apps/edge-one')
    const all = await edge('/', { method: 'PURGE', headers: { 'x-purge-all': '1' } })
    t.equal(all.status, 200)
    t.same(JSON.parse(all.body), { purged: 'all' })
    t.equal((await edge('/v1/apps/edge-one')).headers['x-cache'], 'MISS')

    for (const headers of [{}, { 'x-purge-all': 'yes' }, { 'xkey-purge': ' ' }] as Array<Record<string, string>>) {
      const bad = await edge('/', { method: 'PURGE', headers })
      t.equal(bad.status, 400, `400 for ${JSON.stringify(headers)}`)
      t.match(bad.headers['content-type'], /application\/problem\+json/)
      t.match(JSON.parse(bad.body), { status: 400, code: 'bad_request' })
    }
  })

  t.test('edge › varnish › a PURGE from outside the purgers ACL is 403 and drops nothing', async (t) => {
    await purgeAll()
    await edge('/v1/regions')
    // 127.0.0.2 is loopback too, but not in the ACL (127.0.0.1 and ::1).
    const res = await edge('/', { method: 'PURGE', headers: { 'xkey-purge': 'regions' }, localAddress: '127.0.0.2' })
    t.equal(res.status, 403)
    t.match(JSON.parse(res.body), { status: 403, code: 'forbidden' })
    const all = await edge('/', { method: 'PURGE', headers: { 'x-purge-all': '1' }, localAddress: '127.0.0.2' })
    t.equal(all.status, 403)
    t.equal((await edge('/v1/regions')).headers['x-cache'], 'HIT', 'still cached')
  })

  t.test('edge › varnish › a private route (GET /v1/users/me with a token) is never cached', async (t) => {
    await purgeAll()
    const user = await given(app).signedIn()
    const before = seen('/v1/users/me')
    const first = await edge('/v1/users/me', { headers: user.headers })
    const second = await edge('/v1/users/me', { headers: user.headers })
    t.equal(first.status, 200)
    t.equal(second.status, 200)
    t.match(second.headers['cache-control'], /no-store/)
    t.equal(first.headers['x-cache'], 'MISS')
    t.equal(second.headers['x-cache'], 'MISS')
    t.equal(seen('/v1/users/me') - before, 2, 'both reached the app')
    t.equal(JSON.parse(second.body).email, user.account.email)

    const anonymous = await edge('/v1/users/me')
    t.equal(anonymous.status, 401, 'without the token: 401, not the cached answer of someone else')
  })

  t.test('edge › varnish › Authorization on a public route bypasses the cache, and keeps its cookies', async (t) => {
    await purgeAll()
    const token = await given(app).token()
    await edge('/v1/regions')
    t.equal((await edge('/v1/regions')).headers['x-cache'], 'HIT')
    const before = seen('/v1/regions')
    const cookiesBefore = origin.cookies.length
    const authorized = await edge('/v1/regions', { headers: { ...bearer(token), cookie: 'session=abc', 'x-test-set-cookie': '1' } })
    t.equal(authorized.status, 200)
    t.equal(authorized.headers['x-cache'], 'MISS')
    t.equal(seen('/v1/regions') - before, 1, 'it reached the app')
    t.equal(origin.cookies[cookiesBefore], 'session=abc', 'the app got the Cookie')
    t.same(authorized.headers['set-cookie'], ['tracking=1; Path=/'], 'and the client got the Set-Cookie')
    t.equal((await edge('/v1/regions')).headers['x-cache'], 'HIT', 'the cached copy was neither used nor replaced')
  })

  t.test('edge › varnish › a public read loses its cookies both ways and stays cacheable', async (t) => {
    await purgeAll()
    const cookiesBefore = origin.cookies.length
    const first = await edge('/v1/regions', { headers: { cookie: 'session=abc', 'x-test-set-cookie': '1' } })
    t.equal(first.status, 200)
    t.equal(first.headers['x-cache'], 'MISS')
    t.equal(origin.cookies.length, cookiesBefore + 1)
    t.equal(origin.cookies[cookiesBefore], undefined, 'the app got no Cookie')
    t.notOk(first.headers['set-cookie'], 'the client got no Set-Cookie')
    const second = await edge('/v1/regions', { headers: { cookie: 'other=1' } })
    t.equal(second.headers['x-cache'], 'HIT', 'a Cookie does not split or bypass the cache')
    t.notOk(second.headers['set-cookie'])
  })

  t.test('edge › varnish › stale-if-error: when the app answers 500, the stale copy is served', async (t) => {
    await purgeAll()
    const cached = await edge('/v1/status')
    t.equal(cached.status, 200)
    t.equal((await edge('/v1/status')).headers['x-cache'], 'HIT')
    await sleep(statusTtl * 1000 + 500)

    origin.failStatus = true
    t.teardown(() => { origin.failStatus = false })
    const before = seen('/v1/status')
    const stale = await edge('/v1/status')
    // Asked at once, or (within stale-while-revalidate) by a background fetch right after the stale delivery.
    t.ok(await until(() => seen('/v1/status') > before, 5000), 'Varnish asked the app for a fresh copy')
    t.equal(stale.status, 200, 'not the 500')
    t.equal(stale.headers['x-cache'], 'HIT')
    t.equal(stale.body, cached.body, 'the stale copy')
    t.ok(Number(stale.headers.age) >= statusTtl, `older than its ${statusTtl} s life (Age ${stale.headers.age})`)
    // The stale delivery also started a background refresh (it fails too): let it end before recovering.
    await settle(() => seen('/v1/status') >= before + 2, 2000)

    origin.failStatus = false
    // Within stale-while-revalidate the stale copy is served while a background fetch refreshes it; then fresh.
    const asked = seen('/v1/status')
    let recovered = await edge('/v1/status')
    t.equal(recovered.status, 200)
    t.ok(await until(() => seen('/v1/status') > asked, 2000), 'the app is asked again once it answers')
    for (let i = 0; i < 20 && recovered.headers.age !== '0'; i++) {
      await sleep(100)
      recovered = await edge('/v1/status')
    }
    t.equal(recovered.headers.age, '0', 'a fresh copy once the app answers again')
    t.not(recovered.body, '', 'with a body')
  })

  // Last: the app stops listening.
  t.test('edge › varnish › stale-if-error: when the app is down, the stale copy is served; with none, a 503 problem', async (t) => {
    await purgeAll()
    const cached = await edge('/v1/status')
    t.equal(cached.status, 200)
    t.equal((await edge('/v1/status')).headers['x-cache'], 'HIT')
    await sleep(statusTtl * 1000 + 500)

    await new Promise((resolve) => { app.server.close(resolve); app.server.closeAllConnections() })
    t.not((await fetch(`http://127.0.0.1:${appPort}/healthz`).catch(() => null))?.status, 200, 'the app is down')
    const stale = await edge('/v1/status')
    t.equal(stale.status, 200)
    t.equal(stale.headers['x-cache'], 'HIT')
    t.equal(stale.body, cached.body, 'the stale copy')
    t.ok(Number(stale.headers.age) >= statusTtl, `older than its ${statusTtl} s life (Age ${stale.headers.age})`)

    const none = await edge('/v1/apps/never-cached')
    t.equal(none.status, 503)
    t.match(none.headers['content-type'], /application\/problem\+json/)
    t.equal(none.headers['retry-after'], '5')
    t.match(JSON.parse(none.body), { status: 503, code: 'unavailable' })
  })
}
