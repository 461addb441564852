import type { JobContext, JobDefinition } from '../queue.js'
import { renderMail, sendMailJob, type SendMailPayload } from './mail.service.js'

export { sendMailJob, type SendMailPayload }

export interface OutgoingMail {
  from: string
  to: string
  subject: string
  text: string
  html: string
  headers?: Record<string, string>
}

/** Where rendered mail goes: an SMTP server, or the log in the embedded default. */
export interface MailTransport {
  send (message: OutgoingMail): Promise<{ messageId: string }>
}

interface Log { info (obj: object, msg: string): void, warn (obj: object, msg: string): void }

/** Counts sends per recipient (the accounts' sliding-window throttle). */
interface Throttle { attempt (key: string, max: number, windowSeconds: number): Promise<number> }

export function createMailJobs (deps: { transport: MailTransport, from: string, log: Log, throttle: Throttle, maxPerAddressPerHour: number }): JobDefinition[] {
  return [{
    ...sendMailJob,
    async handle (data: SendMailPayload, ctx: JobContext) {
      // Every mail we send counts against its recipient's hourly cap, whatever asked for it: nobody can make
      // us flood an inbox, through public operations or signed in. Past the cap the mail is dropped (logged).
      if (await deps.throttle.attempt(`mail:to:${data.to.toLowerCase()}`, deps.maxPerAddressPerHour, 3600) > 0) {
        deps.log.warn({ job: ctx.id, template: data.template }, 'mail dropped: its recipient reached MAIL_MAX_PER_ADDRESS_PER_HOUR')
        return { dropped: 'recipient_cap' }
      }
      const rendered = renderMail(data.template, data.data)
      const { messageId } = await deps.transport.send({ from: deps.from, to: data.to, ...rendered, headers: data.headers })
      // No address here: the log outlives the account.
      deps.log.info({ job: ctx.id, template: data.template, messageId }, 'mail sent')
      return { messageId }
    }
  }]
}
