// Swagger UI at /docs, the way a developer meets it: in headless Chromium, against the app listening on a
// real port. Authorize with a bearer token, "Try it out" on GET /v1/users/me, read the 200; the token is kept
// across a reload; the page loads nothing from elsewhere and logs no error.
import { mkdir, stat } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import type { Locator, Page } from 'playwright-core'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { launch, offHost, recordedPage, skipWithoutChromium } from './browser.js'

const root = new URL('../..', import.meta.url).pathname
// Under tap's own output folder (.tap/, gitignored), kept after the run to be looked at.
const screenshot = join(root, '.tap/screenshots/swagger-ui.png')

/** Whether `locator` becomes visible within a few seconds. */
const visible = (locator: Locator) => locator.waitFor({ state: 'visible', timeout: 5_000 }).then(() => true, () => false)

/** Expands GET /v1/users/me, turns "Try it out" on when it is not already, executes, and returns status and body. */
async function tryGetMe (page: Page): Promise<{ status: string, body: string }> {
  const block = page.locator('#operations-accounts-getMe')
  await block.waitFor({ state: 'visible' })
  if (!await block.locator('.opblock-body').isVisible()) await block.locator('.opblock-summary-control').click()
  const tryOut = block.locator('button.try-out__btn')
  if ((await tryOut.textContent())?.trim() === 'Try it out') await tryOut.click()
  await block.locator('button.execute').click()
  const status = block.locator('.live-responses-table .response .response-col_status')
  await status.waitFor({ state: 'visible', timeout: 10_000 })
  const body = block.locator('.live-responses-table .response-col_description .highlight-code pre').first()
  return { status: (await status.textContent())?.trim() ?? '', body: (await body.textContent()) ?? '' }
}

t.test('swagger ui › Authorize with a bearer token, Try it out on GET /v1/users/me, kept across a reload', { skip: skipWithoutChromium }, async (t) => {
  // The browser starts while the app does.
  const [app, browser] = await Promise.all([build(t), launch(t)])
  const user = await given(app).signedIn()
  await app.listen({ port: 0, host: '127.0.0.1' })
  const address = app.server.address()
  const base = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`
  const { page, recorded } = await recordedPage(browser)

  const response = await page.goto(`${base}/docs`, { waitUntil: 'load' })
  t.equal(response?.status(), 200)
  await page.locator('.swagger-ui .info .title').waitFor({ state: 'visible', timeout: 15_000 })
  t.match(await page.locator('.swagger-ui .info .title').textContent(), /Fractal webserver API/)

  // Authorize: the bearer scheme's field, "Authorize", "Close".
  await page.locator('.auth-wrapper button.authorize').click()
  const modal = page.locator('.dialog-ux .modal-ux')
  await modal.waitFor({ state: 'visible' })
  t.ok(await modal.locator('.auth-container', { hasText: 'X-Api-Key' }).locator('input').isVisible(), 'partner API keys (X-Api-Key) can be entered too')
  const bearerScheme = modal.locator('.auth-container').filter({ has: page.locator('h4 code', { hasText: /^bearer$/ }) })
  await bearerScheme.locator('input[aria-label="auth-bearer-value"]').fill(user.accessToken)
  await bearerScheme.getByRole('button', { name: 'Apply credentials' }).click()
  await bearerScheme.locator('h6', { hasText: 'Authorized' }).waitFor({ state: 'visible' })
  t.ok(await bearerScheme.getByRole('button', { name: 'Remove authorization' }).isVisible(), 'the modal shows the bearer scheme authorized (Logout)')
  await bearerScheme.getByRole('button', { name: 'Close' }).click()
  await modal.waitFor({ state: 'detached' })
  t.ok(await visible(page.locator('.auth-wrapper button.authorize.locked')), 'the Authorize button shows a closed lock')

  const first = await tryGetMe(page)
  t.equal(first.status, '200', 'Try it out answered 200')
  t.match(first.body, user.account.email, 'the rendered response is the signed-in user')
  t.match(JSON.parse(first.body), { id: user.account.id, email: user.account.email })

  // The screenshot shows the executed request and its 200.
  await page.locator('#operations-accounts-getMe .live-responses-table').scrollIntoViewIfNeeded()
  await mkdir(dirname(screenshot), { recursive: true })
  await page.screenshot({ path: screenshot, fullPage: false })
  t.ok((await stat(screenshot)).size > 1000, `screenshot saved at ${screenshot}`)

  // persistAuthorization: after a reload the token is still there, and still used.
  await page.reload({ waitUntil: 'load' })
  await page.locator('.swagger-ui .info .title').waitFor({ state: 'visible', timeout: 15_000 })
  t.ok(await visible(page.locator('.auth-wrapper button.authorize.locked')), 'still authorized after a reload')
  const storage = await page.context().storageState()
  const stored = storage.origins.find((o) => o.origin === base)?.localStorage.find((entry) => entry.name === 'authorized')?.value
  t.match(stored, user.accessToken, 'the token is kept in localStorage')
  const second = await tryGetMe(page)
  t.equal(second.status, '200', 'Try it out after the reload answers 200 with the kept token')
  t.match(second.body, user.account.email)

  await page.waitForLoadState('networkidle')
  t.ok(recorded.requests.some((url) => url.startsWith(`${base}/v1/users/me`)), 'the request went to this server')
  t.same(offHost(recorded, base), [], 'every request went to the app')
  t.same(recorded.consoleErrors, [], 'no console error')
  t.same(recorded.pageErrors, [], 'no uncaught exception')
})
