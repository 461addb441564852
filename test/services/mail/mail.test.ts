import { createServer, type AddressInfo } from 'node:net'
import { Writable } from 'node:stream'
import t from 'tap'
import { buildApp } from '../../../app.js'
import type { OutgoingMail } from '../../../services/mail/mail.jobs.js'
import { renderMail, sendMail, sendMailJob, type MailTemplate, type MailTemplates } from '../../../services/mail/mail.service.js'
import type { JobQueue } from '../../../services/queue.js'
import { build, testConfig, type Overrides } from '../../helpers/build.js'
import { startMailbox } from '../../helpers/mailbox.js'
import { until } from '../../helpers/wait.js'

type Test = Parameters<typeof testConfig>[0]

const escapeHtml = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!)

const name = '<script>alert("hi")</script> O\'Neil & Co'
const samples: { [T in MailTemplate]: MailTemplates[T] } = {
  'verify-email': { name, link: 'https://app.fractal.test/verify-email?token=v1&u=1' },
  'verify-new-email': { name, link: 'https://app.fractal.test/verify-email?token=v2&u=1' },
  'password-reset': { name, link: 'https://app.fractal.test/reset-password?token=r1&u=1' },
  'email-changed': { name, newEmail: 'new+<i>@example.test', resetLink: 'https://app.fractal.test/forgot-password?email=old&x=1' },
  'account-exists': { name, signInLink: 'https://app.fractal.test/sign-in?from=mail&x=1', resetLink: 'https://app.fractal.test/forgot-password?from=mail&x=1' },
  welcome: { name, link: 'https://app.fractal.test/?from=welcome&x=1' },
  'payment-receipt': { name, amount: 1250, currency: 'EUR', period: { start: '2026-03-01', end: '2026-03-31' }, invoiceUrl: 'https://pay.fractal.test/i/in_1?a=1&b=2' },
  'payment-failed': { name, amount: 1250, currency: 'JPY', link: 'https://app.fractal.test/billing?from=mail&x=1' },
  'newsletter-confirm': { link: 'https://app.fractal.test/newsletter/confirm?token=n1&list=news' }
}

/** The app with its logs captured, for the cases where the log is the effect. */
async function appWithLogs (t: Test, overrides: Overrides = {}) {
  const lines: Array<Record<string, any>> = []
  const stream = new Writable({ write (chunk, _enc, done) { lines.push(JSON.parse(chunk.toString())); done() } })
  const app = await buildApp(await testConfig(t, { LOG_LEVEL: 'info', ...overrides }), { logger: { level: 'info', stream } })
  t.teardown(() => app.close())
  await app.ready()
  return { app, lines }
}

/** A local port nothing listens on. */
async function closedPort () {
  const server = createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address() as AddressInfo
  await new Promise((resolve) => server.close(resolve))
  return port
}

/** Counts the attempts that reach the transport, keeping their errors. */
function spyOnSend (app: { mailer: { send (m: OutgoingMail): Promise<{ messageId: string }> } }) {
  const calls: Array<{ message: OutgoingMail, err?: Error }> = []
  const send = app.mailer.send.bind(app.mailer)
  app.mailer.send = async (message) => {
    const call: { message: OutgoingMail, err?: Error } = { message }
    calls.push(call)
    try {
      return await send(message)
    } catch (err) {
      call.err = err as Error
      throw err
    }
  }
  return calls
}

for (const [template, data] of Object.entries(samples) as Array<[MailTemplate, MailTemplates[MailTemplate]]>) {
  t.test(`mail › valid › ${template} renders its variables in the text part, and escaped in the HTML part`, async (t) => {
    const mail = renderMail(template, data)
    t.ok(mail.subject.length > 0, 'has a subject')
    t.notMatch(mail.subject, /[\r\n]/)
    for (const [key, value] of Object.entries(data)) {
      if (typeof value !== 'string' || key === 'currency') continue
      t.ok(mail.text.includes(value), `text has ${key} as is`)
      t.ok(mail.html.includes(escapeHtml(value)), `html has ${key} escaped`)
    }
    t.notOk(mail.html.includes('<script>'), 'no markup from the data in the html')
    t.notOk(mail.html.includes('<i>'), 'no markup from the data in the html')
    t.match(mail.html, /^<!doctype html>/, 'html part uses the layout')
    t.ok(mail.html.includes(`<title>${escapeHtml(mail.subject)}</title>`))
    t.match(mail.text, /The Fractal team\n$/, 'text part is signed')
    t.match(mail.html, /The Fractal team/, 'html part is signed')
  })
}

t.test('mail › valid › payments show the amount in the currency\'s major unit and the period as dates', async (t) => {
  const receipt = renderMail('payment-receipt', samples['payment-receipt'])
  t.equal(receipt.subject, 'Your Fractal receipt for €12.50')
  t.match(receipt.text, 'Amount: €12.50')
  t.match(receipt.text, 'Period: March 1, 2026 to March 31, 2026')
  t.match(receipt.html, '€12.50')
  const failed = renderMail('payment-failed', samples['payment-failed'])
  t.match(failed.text, '¥1,250', 'a currency without minor units is not divided')
})

t.test('mail › valid › link expiry is stated where the link expires', async (t) => {
  t.match(renderMail('verify-email', samples['verify-email']).text, /24 hours/)
  t.match(renderMail('verify-new-email', samples['verify-new-email']).text, /24 hours/)
  t.match(renderMail('password-reset', samples['password-reset']).text, /1 hour\b.*ignore this email/s)
})

t.test('mail › valid › sendMail queues the template and its data with retries, not the rendered mail', async (t) => {
  const calls: unknown[][] = []
  const queue: JobQueue = {
    async enqueue (...args) { calls.push(args); return 'job-1' },
    async counts () { return { waiting: 0, active: 0, delayed: 0, failed: 0, succeeded: 0 } }
  }
  const id = await sendMail(queue, { to: 'ann@example.test', template: 'welcome', data: samples.welcome }, { jobId: 'welcome:ann' })
  t.equal(id, 'job-1')
  t.same(calls, [[sendMailJob, { to: 'ann@example.test', template: 'welcome', data: samples.welcome, headers: undefined }, { retries: 5, timeoutMs: 120000, jobId: 'welcome:ann' }]])
})

t.test('mail › invalid › sendMail refuses anything but one bare address', async (t) => {
  const queue: JobQueue = {
    async enqueue () { t.fail('nothing is queued'); return '' },
    async counts () { return { waiting: 0, active: 0, delayed: 0, failed: 0, succeeded: 0 } }
  }
  for (const to of ['ann@example.test, eve@evil.test', 'Eve <eve@evil.test>', 'ann@example.test\r\nBcc: eve@evil.test', 'not-an-address', '']) {
    await t.rejects(sendMail(queue, { to, template: 'welcome', data: samples.welcome }), { code: 'bad_request' }, JSON.stringify(to))
  }
})

t.test('mail › invalid › an unknown template name (from an old or newer payload) is an error, not a file lookup', async (t) => {
  t.throws(() => renderMail('../../../package' as MailTemplate, samples.welcome), { code: 'internal', message: /no mail template named/ })
})

t.test('mail › valid › a queued mail reaches the SMTP server with subject, from, to, both parts and the link', async (t) => {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  const link = samples['verify-email'].link

  await sendMail(app.queue, { to: 'ann@example.test', template: 'verify-email', data: { name: 'Ann', link } })
  app.queue.startWorker(1)
  const mail = await mailbox.waitFor('ann@example.test')

  t.equal(mail.subject, 'Verify your email address')
  t.same(mail.from?.value, [{ name: 'Fractal', address: 'no-reply@fractal.co' }])
  t.same(mail.to && !Array.isArray(mail.to) ? mail.to.value : null, [{ name: '', address: 'ann@example.test' }])
  t.match(mail.text, /^Hi Ann,/)
  t.equal(mailbox.linkIn(mail, '/verify-email'), link)
  t.ok(typeof mail.html === 'string' && mail.html.includes(`href="${escapeHtml(link)}"`), 'html part links the same URL')
})

t.test('mail › valid › List-Unsubscribe headers reach the recipient unchanged (RFC 8058)', async (t) => {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url })
  const unsubscribe = '<https://app.fractal.test/newsletter/unsubscribe?token=u1>, <mailto:unsubscribe@fractal.co?subject=u1>'

  await sendMail(app.queue, {
    to: 'bob@example.test',
    template: 'newsletter-confirm',
    data: samples['newsletter-confirm'],
    headers: { 'List-Unsubscribe': unsubscribe, 'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click' }
  })
  app.queue.startWorker(1)
  const mail = await mailbox.waitFor('bob@example.test')

  const header = (key: string) => mail.headerLines.find((h) => h.key === key)?.line.replace(/\r?\n[ \t]+/g, ' ')
  t.equal(header('list-unsubscribe'), `List-Unsubscribe: ${unsubscribe}`)
  t.equal(header('list-unsubscribe-post'), 'List-Unsubscribe-Post: List-Unsubscribe=One-Click')
})

t.test('mail › invalid › with the SMTP server down the attempt fails and the job is retried', async (t) => {
  const app = await build(t, { SMTP_URL: `smtp://127.0.0.1:${await closedPort()}` })
  const calls = spyOnSend(app)

  await sendMail(app.queue, { to: 'ann@example.test', template: 'welcome', data: samples.welcome })
  app.queue.startWorker(1)

  t.ok(await until(() => calls.length >= 2 && calls.every((c) => c.err)), 'a second attempt after the first failed')
  t.match(calls[0]?.err, { message: /ECONNREFUSED/ }, 'the attempt failed on the connection')
  t.equal(calls[1]?.message.to, 'ann@example.test', 'the retry sends the same mail')
  t.equal((await app.queue.counts('mail')).succeeded, 0)
})

t.test('mail › embedded › without SMTP_URL the mail is written to the log, its links listed', async (t) => {
  const { app, lines } = await appWithLogs(t)
  const link = samples['password-reset'].link

  await sendMail(app.queue, { to: 'ann@example.test', template: 'password-reset', data: { name: 'Ann', link } })
  app.queue.startWorker(1)

  t.ok(await until(() => lines.some((l) => l.mail)), 'a log line carries the mail')
  const line = lines.find((l) => l.mail)!
  t.equal(line.level, 30, 'at info level')
  t.match(line.mail, { to: 'ann@example.test', subject: 'Reset your Fractal password', links: [link] })
  t.match(line.mail.text, /^Hi Ann,/)
  t.notOk('html' in line.mail, 'the html part is left out')
})

t.test('mail › embedded › in production without SMTP_URL no link reaches the log and the attempt fails', async (t) => {
  const { app, lines } = await appWithLogs(t, { NODE_ENV: 'production', CLOUD_PROVIDER: 'simulated' })
  const calls = spyOnSend(app)

  await sendMail(app.queue, { to: 'ann@example.test', template: 'password-reset', data: samples['password-reset'] })
  app.queue.startWorker(1)

  t.ok(await until(() => calls.some((c) => c.err)), 'the attempt failed')
  t.match(calls[0]?.err, { message: /no SMTP_URL/ })
  t.notOk(lines.some((l) => JSON.stringify(l).includes('token=r1')), 'the reset token is not in the log')
})
