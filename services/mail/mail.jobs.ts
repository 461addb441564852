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

interface Log { info (obj: object, msg: string): void }

export function createMailJobs (deps: { transport: MailTransport, from: string, log: Log }): JobDefinition[] {
  return [{
    ...sendMailJob,
    async handle (data: SendMailPayload, ctx: JobContext) {
      const rendered = renderMail(data.template, data.data)
      const { messageId } = await deps.transport.send({ from: deps.from, to: data.to, ...rendered, headers: data.headers })
      // No address here: the log outlives the account.
      deps.log.info({ job: ctx.id, template: data.template, messageId }, 'mail sent')
      return { messageId }
    }
  }]
}
