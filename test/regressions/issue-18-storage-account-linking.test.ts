// Broke (issue 18, item 6): the OAuth state of a storage connection was bound to the user who started the
// flow and to nothing in the browser. An attacker started a connection and sent the authorization URL to a
// victim; the victim consented, and the victim's Drive was linked to the attacker's account (302
// status=connected, the attacker's list showed the victim's address, the tokens went to the attacker's
// containers). The flow is now bound to the browser that opens our authorization page.
import t from 'tap'
import { parse } from 'yaml'
import { readFile } from 'node:fs/promises'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import {
  authorize, authorizeIn, Browser, callback, openPage, providerUrlFor, startConnection, startProviders, stoppedClock
} from '../helpers/storage-oauth.js'
import { specPath } from '../../openapi/spec.js'

type App = Awaited<ReturnType<typeof build>>

const connectionCount = async (app: App) =>
  Number((await app.db.selectFrom('storage_connection').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n)

t.test('storageCallback › insufficient permissions › an attacker\'s flow completed in the victim\'s browser links nothing, to anyone (issue 18)', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const attacker = await given(app).signedIn()
  const victim = await given(app).signedIn()
  drive.email = 'victim@drive.example.test'

  // The attacker starts, follows the flow in their own browser up to the provider, and sends that URL on.
  const started = await startConnection(app, attacker.headers, 'drive')
  const sent = await providerUrlFor(app, new Browser(), started.json().authorizationUrl)
  // The victim's browser consents at the provider and comes back to our callback.
  const victimBrowser = new Browser()
  const { code, state } = await authorize(sent)
  const back = await callback(app, { state, code }, victimBrowser)

  t.equal(back.res.statusCode, 302)
  t.same(back.outcome, { provider: 'drive', status: 'error', reason: 'browser_mismatch' })
  t.equal(drive.tokenRequests.length, 0, 'the victim\'s code was never exchanged')
  t.equal(await connectionCount(app), 0, 'nothing stored')
  const list = await app.inject({ method: 'GET', url: '/v1/storage/connections', headers: attacker.headers })
  t.same(list.json(), { items: [] }, 'the attacker\'s list shows no connection, no address')
  t.notOk(list.body.includes('victim@drive.example.test'))
  t.same((await app.inject({ method: 'GET', url: '/v1/storage/connections', headers: victim.headers })).json(), { items: [] })
  // And the attacker's own browser cannot use the state any more.
  t.equal((await callback(app, { state, code }, new Browser())).outcome!.reason, 'invalid_state', 'the state was used up')
})

t.test('storageCallback › insufficient permissions › with the victim\'s own cookie (their flow under way) the attacker\'s state is still refused, and the victim\'s flow still works', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const attacker = await given(app).signedIn()
  const victim = await given(app).signedIn()

  const attackersFlow = await authorizeIn(app, attacker.headers, drive)
  const victimsFlow = await authorizeIn(app, victim.headers, drive)
  t.ok(victimsFlow.browser.jar.size === 1, 'the victim\'s browser holds its own nonce')

  const forged = await callback(app, { state: attackersFlow.state, code: attackersFlow.code }, victimsFlow.browser)
  t.same(forged.outcome, { provider: 'drive', status: 'error', reason: 'browser_mismatch' })
  t.equal(victimsFlow.browser.jar.size, 1, 'a refused state leaves the browser\'s own nonce alone')
  t.equal(await connectionCount(app), 0)

  t.equal((await callback(app, { state: victimsFlow.state, code: victimsFlow.code }, victimsFlow.browser)).outcome!.status, 'connected')
  const owners = await app.db.selectFrom('storage_connection').select('user_id').execute()
  t.same(owners, [{ user_id: victim.account.id }], 'only the victim\'s own flow connected, to the victim')
})

t.test('storageCallback › insufficient permissions › one state sent at once from its own browser and from many others: only its browser can connect, at most once', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const user = await given(app).signedIn()
  const flow = await authorizeIn(app, user.headers, drive)
  const others = Array.from({ length: 6 }, () => new Browser())

  // Foreign browsers only first: whichever takes the state, nothing is connected.
  const foreign = await Promise.all(others.map((b) => callback(app, { state: flow.state, code: flow.code }, b)))
  t.same(foreign.map((o) => o.outcome!.reason).sort(), ['browser_mismatch', ...Array(5).fill('invalid_state')])
  t.equal(drive.tokenRequests.length, 0)
  t.equal(await connectionCount(app), 0)

  // A new flow raced by its own browser (several times) and the others: one connection at most, from the flow's browser.
  const next = await authorizeIn(app, user.headers, drive)
  const all = await Promise.all([...others, next.browser, next.browser, next.browser].map((b) => callback(app, { state: next.state, code: next.code }, b).then((o) => ({ own: b === next.browser, ...o }))))
  const connected = all.filter((o) => o.outcome!.status === 'connected')
  t.ok(connected.length <= 1, `at most one connection (${connected.length})`)
  t.ok(connected.every((o) => o.own), 'and only from the flow\'s own browser')
  t.equal(await connectionCount(app), connected.length)
  t.equal(drive.tokenRequests.length, connected.length, 'an exchange only for that connection')
})

t.test('authorizeStorageConnection › insufficient permissions › sent our own link instead, the victim\'s browser is told whose Fractal account it would connect', async (t) => {
  const { drive, env } = await startProviders(t)
  const app = await build(t, env)
  const attacker = await given(app).signedIn()
  const victim = await given(app).signedIn()

  const started = await startConnection(app, attacker.headers, 'drive')
  const page = await openPage(app, new Browser(), started.json().authorizationUrl)

  t.equal(page.res.statusCode, 200, 'an interstitial, not a redirect to the provider')
  t.equal(page.accountEmail, attacker.account.email, 'the page names the attacker\'s account')
  t.notOk(page.res.body.includes(victim.account.email))
  t.match(page.res.body, /not your Fractal account/, 'and says to cancel if it is not theirs')
  t.ok(page.cancelUrl, 'with a Cancel')
  t.equal(drive.tokenRequests.length, 0)
  // The attacker cannot open it any more to learn the state behind it.
  t.same((await openPage(app, new Browser(), started.json().authorizationUrl)).outcome, { status: 'error', reason: 'invalid_ticket' })
})

t.test('storageCallback › invalid input › the clock past the state\'s 10 minutes: invalid_state with the right cookie, nothing exchanged or stored', async (t) => {
  const { drive, env } = await startProviders(t)
  const clock = stoppedClock()
  const app = await build(t, env, { clock })
  const user = await given(app).signedIn()
  const flow = await authorizeIn(app, user.headers, drive)

  clock.advance(600_000)
  const back = await callback(app, { state: flow.state, code: flow.code }, flow.browser)

  t.same(back.outcome, { status: 'error', reason: 'invalid_state' })
  t.equal(drive.tokenRequests.length, 0)
  t.equal(await connectionCount(app), 0)

  // A millisecond before its end, the same flow (started again) connects.
  const again = await authorizeIn(app, user.headers, drive)
  clock.advance(599_999)
  t.equal((await callback(app, { state: again.state, code: again.code }, again.browser)).outcome!.status, 'connected')
})

t.test('spec › every OAuth redirect target declares the cookie that binds it to the browser that started the flow', async (t) => {
  // An OAuth redirect target: a public GET taking `state` (and `code`) in the query. Each must name the
  // browser-binding cookie it requires, and its description the refusal when the cookie does not match.
  const document = parse(await readFile(specPath, 'utf8')) as { paths: Record<string, Record<string, any>> }
  const targets = Object.values(document.paths).flatMap((item) => Object.values(item))
    .filter((op) => !op.security?.some((r: object) => Object.keys(r).length > 0))
    .filter((op) => (op.parameters ?? []).some((p: { in: string, name: string }) => p.in === 'query' && p.name === 'state'))
  t.ok(targets.length > 0, 'there are redirect targets')
  for (const op of targets) {
    t.ok(op.parameters.some((p: { in: string }) => p.in === 'cookie'), `${op.operationId} declares its browser cookie`)
    t.match(op.description, /browser_mismatch/, `${op.operationId} documents the refusal`)
  }
})
