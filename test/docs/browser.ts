// Headless Chromium for the docs tests: Debian's `chromium` driven by playwright-core (never a downloaded
// browser). Every request a page makes and every console error are recorded, so a test can say that the
// page loaded nothing from elsewhere and ran clean.
import { accessSync, constants } from 'node:fs'
import { delimiter, join } from 'node:path'
import { chromium, type Browser, type Page } from 'playwright-core'

const candidates = ['chromium', 'chromium-browser', 'google-chrome-stable', 'google-chrome']

/** The Chromium to drive: CHROMIUM_PATH, /usr/bin/chromium, or the first of the usual names on PATH. */
export function findChromium (): string | undefined {
  const paths = [
    ...(process.env.CHROMIUM_PATH ? [process.env.CHROMIUM_PATH] : []),
    '/usr/bin/chromium',
    ...(process.env.PATH ?? '').split(delimiter).filter(Boolean).flatMap((dir) => candidates.map((name) => join(dir, name)))
  ]
  return paths.find((path) => {
    try {
      accessSync(path, constants.X_OK)
      return true
    } catch {
      return false
    }
  })
}

/** Why a browser test cannot run here, or false when it can (tap's `skip` option). */
export const skipWithoutChromium = findChromium()
  ? false
  : 'no chromium binary (install Debian\'s `chromium`, or set CHROMIUM_PATH): the browser tests of the docs are skipped'

type Test = { teardown (fn: () => unknown): void }

export async function launch (t: Test): Promise<Browser> {
  const browser = await chromium.launch({ executablePath: findChromium(), args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'] })
  t.teardown(() => browser.close())
  return browser
}

export type Recorded = { requests: string[], consoleErrors: string[], pageErrors: string[] }

/** A page whose requests, console errors and uncaught exceptions are recorded. */
export async function recordedPage (browser: Browser): Promise<{ page: Page, recorded: Recorded }> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } })
  const page = await context.newPage()
  const recorded: Recorded = { requests: [], consoleErrors: [], pageErrors: [] }
  page.on('request', (request) => { recorded.requests.push(request.url()) })
  page.on('console', (message) => { if (message.type() === 'error') recorded.consoleErrors.push(`${message.text()} (${message.location().url})`) })
  page.on('pageerror', (error) => { recorded.pageErrors.push(String(error)) })
  return { page, recorded }
}

/** The requests that left `base` (data: and blob: URLs stay in the page). */
export function offHost (recorded: Recorded, base: string): string[] {
  return recorded.requests.filter((url) => !url.startsWith(`${base}/`) && url !== base && !/^(data|blob):/.test(url))
}
