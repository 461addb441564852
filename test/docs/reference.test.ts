// The static reference for third parties at /reference (Redoc, served from node_modules by us).
import { mkdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import t from 'tap'
import { build } from '../helpers/build.js'
import { launch, offHost, recordedPage, skipWithoutChromium } from './browser.js'

t.test('reference › /reference is an HTML page on /openapi.json with its own CSP, edge-cached like the document', async (t) => {
  const app = await build(t)
  const res = await app.inject({ method: 'GET', url: '/reference' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /^text\/html; charset=utf-8/)
  t.match(res.body, /<redoc spec-url="\/openapi\.json"/)
  t.notMatch(res.body, /https?:\/\//, 'nothing loaded from another host')
  t.notMatch(res.body, /<script>/, 'no inline script')
  const csp = res.headers['content-security-policy'] as string
  t.match(csp, /script-src 'self'(;|$)/)
  t.match(csp, /connect-src 'self'/)
  t.match(csp, /frame-ancestors 'none'/)
  t.notMatch(csp, /unsafe-eval|https:/, 'no eval, no other host')

  const openapi = await app.inject({ method: 'GET', url: '/openapi.json' })
  for (const header of ['cache-control', 'cdn-cache-control', 'surrogate-key', 'vary']) {
    t.equal(res.headers[header], openapi.headers[header], `${header} as on /openapi.json`)
  }
  t.match(res.headers['cache-control'], /public, max-age=\d+, s-maxage=\d+/)
  t.match(res.headers.etag, /^"[\w-]+"$/)
  const again = await app.inject({ method: 'GET', url: '/reference', headers: { 'if-none-match': res.headers.etag as string } })
  t.equal(again.statusCode, 304)
  t.equal(again.body, '')

  const src = res.body.match(/<script src="([^"]+)"/)?.[1]
  t.match(src, /^\/reference\/redoc-\d+\.\d+\.\d+\.standalone\.js$/, 'the bundle\'s URL names its version')
  const bundle = await app.inject({ method: 'GET', url: src! })
  t.equal(bundle.statusCode, 200)
  t.match(bundle.headers['content-type'], /^text\/javascript/)
  t.match(bundle.headers['cache-control'], /immutable/)
  t.notMatch(bundle.body, /cdn\.redoc\.ly/, 'no logo from Redocly\'s CDN')
  t.ok(bundle.body.length > 100_000, 'the whole standalone bundle')
})

t.test('reference › Chromium renders the operations, loading nothing from elsewhere, with no console error', { skip: skipWithoutChromium }, async (t) => {
  const [app, browser] = await Promise.all([build(t), launch(t)])
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
  const { page, recorded } = await recordedPage(browser)

  const response = await page.goto(`${base}/reference`, { waitUntil: 'load' })
  t.equal(response?.status(), 200)
  // Redoc renders each operation's summary in the menu and as a heading in the middle panel.
  const signIn = page.locator('h2', { hasText: 'Sign in with e-mail and password' }).first()
  await signIn.waitFor({ state: 'visible', timeout: 20_000 })
  t.ok(await signIn.isVisible(), 'the signIn operation is rendered')
  // One section per operation, named by its operationId.
  const spec = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  const operationIds = Object.values<Record<string, any>>(spec.paths)
    .flatMap((item) => ['get', 'put', 'post', 'patch', 'delete'].filter((m) => item[m]).map((m) => item[m].operationId as string))
  const sections = await page.locator('[data-section-id^="operation/"]').evaluateAll((nodes) => nodes.map((n) => n.getAttribute('data-section-id')))
  t.same(new Set(sections), new Set(operationIds.map((id) => `operation/${id}`)), 'every operation has its section')
  t.equal(await page.title(), 'Fractal webserver API reference')
  await page.waitForLoadState('networkidle')
  const screenshot = join(new URL('../..', import.meta.url).pathname, '.tap/screenshots/reference.png')
  await mkdir(join(screenshot, '..'), { recursive: true })
  await signIn.scrollIntoViewIfNeeded()
  await page.screenshot({ path: screenshot })
  t.ok((await stat(screenshot)).size > 1000, `screenshot saved at ${screenshot}`)

  t.ok(recorded.requests.includes(`${base}/openapi.json`), 'the page read /openapi.json')
  t.same(offHost(recorded, base), [], 'every request went to the app')
  t.same(recorded.consoleErrors, [], 'no console error')
  t.same(recorded.pageErrors, [], 'no uncaught exception')
})
