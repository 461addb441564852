// Issue 20: mailed links pointed to http://127.0.0.1:3000/verify-email?token=… whatever PORT was, a page nobody
// serves. The link base is APP_URL, by default this server's own address, and embedded mode logs next to each
// mail the API request (a curl line) that does what the link's page would.
import { execFile } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer } from 'node:net'
import { promisify } from 'node:util'
import t from 'tap'
import { buildApp } from '../../app.js'
import { linkRequests } from '../../plugins/mail.js'
import { loadConfig } from '../../plugins/config.js'
import { testConfig } from '../helpers/build.js'
import { until } from '../helpers/wait.js'

async function freePort (): Promise<number> {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as { port: number }
  await new Promise((resolve) => server.close(resolve))
  return port
}

t.test('config › mailed links default to this server, on its PORT; APP_URL wins', async (t) => {
  t.equal(loadConfig({ PORT: '4321' }).appUrl, 'http://127.0.0.1:4321')
  t.equal(loadConfig({ HOST: '0.0.0.0', PORT: '8080' }).appUrl, 'http://127.0.0.1:8080', 'a wildcard host is reached on the loopback')
  t.equal(loadConfig({ PORT: '4321', APP_URL: 'https://app.example.com/' }).appUrl, 'https://app.example.com')
  t.equal(loadConfig({ PORT: '4321', APP_URL: 'https://app.example.com' }).storage.clientRedirect, 'https://app.example.com/storage')
  t.equal(loadConfig({ PORT: '4321', PUBLIC_URL: 'https://api.example.com' }).apiUrl, 'https://api.example.com')
})

t.test('mail log › a link with a token comes with the request its page would make', async (t) => {
  const api = 'http://127.0.0.1:4321'
  t.same(linkRequests([`${api}/verify-email?token=abc_DEF-123`], api), [
    `curl -sS -X POST ${api}/v1/accounts/verify-email -H 'content-type: application/json' -d '{"token":"abc_DEF-123"}'`
  ])
  t.match(linkRequests(['https://app.example.com/password-reset/confirm?token=t0k3n'], api)[0], `${api}/v1/accounts/password-reset/confirm`)
  t.match(linkRequests(['https://app.example.com/newsletter/confirm?token=t0k3n'], api)[0], `${api}/v1/newsletter/subscriptions/confirm`)
  t.same(linkRequests(['https://app.example.com/billing', 'https://app.example.com/sign-in'], api), [], 'links without a token have none')
})

t.test('signUp › valid › embedded mode logs a curl line that verifies the address against the running server', async (t) => {
  const port = await freePort()
  const lines: Array<{ msg: string, mail?: { links?: string[] } }> = []
  // No SMTP_URL: mail goes to the log, as with `npm start`.
  const config = await testConfig(t, { PORT: String(port), LOG_LEVEL: 'info' })
  const app = await buildApp(config, { logger: { stream: { write: (line: string) => { lines.push(JSON.parse(line)) } } } })
  t.teardown(() => app.close())
  await app.listen({ host: '127.0.0.1', port })
  app.queue.startWorker(1)

  const email = `ada-${randomBytes(3).toString('hex')}@example.test`
  const res = await app.inject({ method: 'POST', url: '/v1/accounts', payload: { email, password: 'correct-horse-battery-staple', name: 'Ada' } })
  t.equal(res.statusCode, 201)
  const find = () => lines.find((l) => l.msg.startsWith('to do what the mailed link does: '))
  t.ok(await until(() => find() !== undefined), 'the request is logged')
  const mail = lines.find((l) => l.msg === 'mail written to the log (no SMTP_URL)')
  t.match(mail?.mail?.links?.[0], `http://127.0.0.1:${port}/verify-email?token=`, 'the link is on this PORT')

  const curl = find()!.msg.slice('to do what the mailed link does: '.length)
  const { stdout } = await promisify(execFile)('sh', ['-c', curl])
  t.match(JSON.parse(stdout), { email, emailVerified: true }, 'run as it is, it verifies the address')
})
