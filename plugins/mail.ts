import { randomUUID } from 'node:crypto'
import type { FastifyBaseLogger } from 'fastify'
import fp from 'fastify-plugin'
import { createMailJobs, type MailTransport } from '../services/mail/mail.jobs.js'

declare module 'fastify' {
  interface FastifyInstance {
    mailer: MailTransport
  }
}

async function createSmtpTransport (url: string) {
  // Loaded only when SMTP is configured: the embedded default never needs it.
  const { default: nodemailer } = await import('nodemailer')
  const transporter = nodemailer.createTransport({
    url,
    pool: true,
    maxConnections: 5,
    // A server that is away fails the attempt within seconds; the queue retries it with backoff.
    connectionTimeout: 10_000,
    greetingTimeout: 10_000,
    socketTimeout: 60_000
  })
  const transport: MailTransport = {
    async send (message) {
      const info = await transporter.sendMail(message)
      return { messageId: info.messageId }
    }
  }
  return { transport, close: async () => { transporter.close() } }
}

const linkPattern = /https?:\/\/[^\s<>"]+/g

// The operation the web app's page behind a mailed link calls with the link's token (the spec's examples).
const linkOperations: Array<{ page: string, path: string, body: (token: string) => object }> = [
  { page: '/verify-email', path: '/v1/accounts/verify-email', body: (token) => ({ token }) },
  { page: '/password-reset/confirm', path: '/v1/accounts/password-reset/confirm', body: (token) => ({ token, password: 'a-new-long-passphrase' }) },
  { page: '/newsletter/confirm', path: '/v1/newsletter/subscriptions/confirm', body: (token) => ({ token }) }
]

/**
 * The requests that do what a mail's links would do on the web app's pages (which embedded mode does not
 * have): one ready-to-run curl line per link with a token, against this API.
 */
export function linkRequests (links: string[], apiUrl: string): string[] {
  return links.flatMap((link) => {
    let url: URL
    try {
      url = new URL(link)
    } catch {
      return []
    }
    const token = url.searchParams.get('token')
    const operation = linkOperations.find((o) => url.pathname.endsWith(o.page))
    if (!token || !operation) return []
    return [`curl -sS -X POST ${apiUrl}${operation.path} -H 'content-type: application/json' -d '${JSON.stringify(operation.body(token))}'`]
  })
}

/**
 * The embedded default: each mail goes to the log, its links listed apart so a developer can click them, and
 * for a link with a token, the API request its page would make (a curl line, also logged as a line of its
 * own so it can be copied as it is). In production that would write sign-in and reset tokens to the logs,
 * so the attempt fails instead.
 */
function createLogTransport (log: FastifyBaseLogger, production: boolean, apiUrl: string) {
  const transport: MailTransport = {
    async send (message) {
      if (production) throw new Error('mail: no SMTP_URL, so the mail cannot be delivered')
      const messageId = `<${randomUUID()}@fractal.invalid>`
      const { to, subject, headers, text } = message
      const links = text.match(linkPattern) ?? []
      const requests = linkRequests(links, apiUrl)
      log.info({ mail: { messageId, to, subject, headers, links, requests, text } }, 'mail written to the log (no SMTP_URL)')
      for (const request of requests) log.info({ mail: { messageId, to } }, `to do what the mailed link does: ${request}`)
      return { messageId }
    }
  }
  return { transport, close: async () => {} }
}

export default fp(async function mailPlugin (app) {
  const { smtpUrl, from } = app.config.mail
  if (smtpUrl !== null && !/^smtps?:\/\//.test(smtpUrl)) throw new Error('mail: config.mail.smtpUrl is not an smtp:// or smtps:// URL')
  if (!from.trim()) throw new Error('mail: config.mail.from is empty')

  const { transport, close } = smtpUrl ? await createSmtpTransport(smtpUrl) : createLogTransport(app.log, app.config.env === 'production', app.config.apiUrl)
  app.decorate('mailer', transport)
  app.queue.define(...createMailJobs({ transport, from, log: app.log, throttle: app.throttle, maxPerAddressPerHour: app.config.mail.maxPerAddressPerHour }))
  app.addHook('onClose', close)
}, { fastify: '5.x', name: 'mail', dependencies: ['config', 'queue', 'throttle'] })
