// A real SMTP server on a free local port that keeps what it receives, parsed, for the test to read.
import type { AddressInfo } from 'node:net'
import { simpleParser, type AddressObject, type ParsedMail } from 'mailparser'
import { SMTPServer } from 'smtp-server'

type Test = { teardown (fn: () => unknown): void }

export interface Mailbox {
  /** `smtp://127.0.0.1:PORT`, for SMTP_URL. */
  url: string
  messages: ParsedMail[]
  /** The first mail (received or still to come) that matches, or that is addressed to `to`. */
  waitFor (match: string | ((mail: ParsedMail) => boolean), timeoutMs?: number): Promise<ParsedMail>
  linkIn: typeof linkIn
  close (): Promise<void>
}

export function recipients (mail: ParsedMail): string[] {
  const to: AddressObject[] = mail.to === undefined ? [] : Array.isArray(mail.to) ? mail.to : [mail.to]
  return to.flatMap((a) => a.value).map((v) => (v.address ?? '').toLowerCase())
}

/** The first http(s) link in the text part, optionally the first whose URL contains `pathPart`. */
export function linkIn (mail: ParsedMail, pathPart?: string): string {
  const links = mail.text?.match(/https?:\/\/[^\s<>"]+/g) ?? []
  const link = links.find((l) => pathPart === undefined || l.includes(pathPart))
  if (!link) throw new Error(`no link${pathPart ? ` containing ${pathPart}` : ''} in the mail "${mail.subject}"`)
  return link
}

export async function startMailbox (t: Test): Promise<Mailbox> {
  const messages: ParsedMail[] = []
  const waiters = new Set<(mail: ParsedMail) => void>()
  const server = new SMTPServer({
    secure: false,
    authOptional: true,
    disabledCommands: ['STARTTLS', 'AUTH'],
    logger: false,
    // The app's pooled connections may outlive the test; do not wait the default 30 s for them.
    closeTimeout: 200,
    onData (stream, _session, callback) {
      simpleParser(stream).then((mail) => {
        messages.push(mail)
        for (const notify of waiters) notify(mail)
        callback()
      }, (err: Error) => callback(err))
    }
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.server.address() as AddressInfo

  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= new Promise<void>((resolve) => server.close(() => resolve()))
    return closed
  }
  t.teardown(close)

  return {
    url: `smtp://127.0.0.1:${port}`,
    messages,
    linkIn,
    close,
    waitFor (match, timeoutMs = 5000) {
      const matches = typeof match === 'function' ? match : (mail: ParsedMail) => recipients(mail).includes(match.toLowerCase())
      const found = messages.find(matches)
      if (found) return Promise.resolve(found)
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(notify)
          reject(new Error(`no mail matching ${typeof match === 'string' ? match : 'the predicate'} within ${timeoutMs} ms (${messages.length} received)`))
        }, timeoutMs)
        const notify = (mail: ParsedMail) => {
          if (!matches(mail)) return
          clearTimeout(timer)
          waiters.delete(notify)
          resolve(mail)
        }
        waiters.add(notify)
      })
    }
  }
}

/** The first mail to `to` with this subject (received or still to come). */
export function mailTo (mailbox: Mailbox, to: string, subject: string): Promise<ParsedMail> {
  return mailbox.waitFor((m) => recipients(m).includes(to.toLowerCase()) && m.subject === subject)
}

/** The `token` query parameter of the link to `path` in a mail. */
export function tokenIn (mail: ParsedMail, path: string): string {
  const link = mail.text?.match(/https?:\/\/[^\s<>"]+/g)?.find((l) => new URL(l).pathname === path)
  if (!link) throw new Error(`no ${path} link in "${mail.subject}"`)
  return new URL(link).searchParams.get('token')!
}
