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

/**
 * The embedded default: each mail goes to the log, its links listed apart so a developer can click them.
 * In production that would write sign-in and reset tokens to the logs, so the attempt fails instead.
 */
function createLogTransport (log: FastifyBaseLogger, production: boolean) {
  const transport: MailTransport = {
    async send (message) {
      if (production) throw new Error('mail: no SMTP_URL, so the mail cannot be delivered')
      const messageId = `<${randomUUID()}@fractal.invalid>`
      const { to, subject, headers, text } = message
      log.info({ mail: { messageId, to, subject, headers, links: text.match(linkPattern) ?? [], text } }, 'mail written to the log (no SMTP_URL)')
      return { messageId }
    }
  }
  return { transport, close: async () => {} }
}

export default fp(async function mailPlugin (app) {
  const { smtpUrl, from } = app.config.mail
  if (smtpUrl !== null && !/^smtps?:\/\//.test(smtpUrl)) throw new Error('mail: config.mail.smtpUrl is not an smtp:// or smtps:// URL')
  if (!from.trim()) throw new Error('mail: config.mail.from is empty')

  const { transport, close } = smtpUrl ? await createSmtpTransport(smtpUrl) : createLogTransport(app.log, app.config.env === 'production')
  app.decorate('mailer', transport)
  app.queue.define(...createMailJobs({ transport, from, log: app.log, throttle: app.throttle, maxPerAddressPerHour: app.config.mail.maxPerAddressPerHour }))
  app.addHook('onClose', close)
}, { fastify: '5.x', name: 'mail', dependencies: ['config', 'queue', 'throttle'] })
