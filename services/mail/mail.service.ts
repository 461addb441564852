import { fileURLToPath } from 'node:url'
import { Eta } from 'eta'
import type { JobQueue } from '../queue.js'
import { InvalidMailRecipient, UnknownMailTemplate } from './mail.errors.js'

/**
 * Every mail the app sends, and the data its templates read. Links are absolute URLs, amounts are in the
 * currency's minor unit (cents, as Stripe gives them), dates are ISO 8601. Payloads cross the queue as JSON.
 */
export type MailTemplates = {
  'verify-email': { name: string, link: string }
  'verify-new-email': { name: string, link: string }
  'password-reset': { name: string, link: string }
  /** Sent to the old address; `resetLink` is for an owner who did not make the change. */
  'email-changed': { name: string, newEmail: string, resetLink: string }
  /** Sent instead of a second account, so sign-up does not tell whether an address is registered. */
  'account-exists': { name: string, signInLink: string, resetLink: string }
  welcome: { name: string, link: string }
  'payment-receipt': { name: string, amount: number, currency: string, period: { start: string, end: string }, invoiceUrl: string }
  'payment-failed': { name: string, amount: number, currency: string, link: string }
  'newsletter-confirm': { link: string }
}
export type MailTemplate = keyof MailTemplates

export interface RenderedMail { subject: string, text: string, html: string }

export interface MailRequest<T extends MailTemplate = MailTemplate> {
  to: string
  template: T
  data: MailTemplates[T]
  /** Extra headers, e.g. RFC 8058 `List-Unsubscribe` and `List-Unsubscribe-Post`. */
  headers?: Record<string, string>
}

/** What the queue carries: the template and its data, rendered by the worker. */
export type SendMailPayload = { [T in MailTemplate]: MailRequest<T> }[MailTemplate]

export const sendMailJob = { family: 'mail', name: 'send' } as const

function money (minor: number, currency: string): string {
  const format = new Intl.NumberFormat('en', { style: 'currency', currency })
  return format.format(minor / 10 ** (format.resolvedOptions().maximumFractionDigits ?? 2))
}

const dateFormat = new Intl.DateTimeFormat('en', { dateStyle: 'long', timeZone: 'UTC' })
const date = (iso: string) => dateFormat.format(new Date(iso))

const subjects: { [T in MailTemplate]: (data: MailTemplates[T]) => string } = {
  'verify-email': () => 'Verify your email address',
  'verify-new-email': () => 'Confirm your new email address',
  'password-reset': () => 'Reset your Fractal password',
  'email-changed': () => 'A change of your Fractal email address was requested',
  'account-exists': () => 'You already have a Fractal account',
  welcome: () => 'Welcome to Fractal',
  'payment-receipt': (d) => `Your Fractal receipt for ${money(d.amount, d.currency)}`,
  'payment-failed': () => 'Your Fractal payment did not go through',
  'newsletter-confirm': () => 'Confirm your Fractal newsletter subscription'
}

// Resolved from this file, so the same code finds services/mail/templates under tsx and dist/ (the build copies them).
const views = fileURLToPath(new URL('./templates/', import.meta.url))
// No automatic trimming: text parts keep their blank lines; templates trim with `-%>` where they mean it.
const html = new Eta({ views, cache: true, autoEscape: true, autoTrim: false })
// The same instance and template cache without escaping, for the text parts (distinct files, so no clash).
const text = html.withConfig({ autoEscape: false })

/** Renders a template's subject, text part and HTML part (variables escaped in the HTML only). */
export function renderMail<T extends MailTemplate> (template: T, data: MailTemplates[T]): RenderedMail {
  // The name may come from a queue payload written by another version of the app.
  if (!Object.hasOwn(subjects, template)) throw new UnknownMailTemplate(String(template))
  const subject = subjects[template](data)
  const view = { ...data, subject, fmt: { money, date } }
  return {
    subject,
    text: text.render(`./${template}.txt.eta`, view),
    html: html.render(`./${template}.html.eta`, view)
  }
}

// One bare address: a comma, angle brackets or a display name would let one mail reach other recipients.
const singleAddress = /^[^\s@<>,;:"()[\]\\]+@[^\s@<>,;:"()[\]\\]+$/

/**
 * Queues a mail for the worker, which renders and sends it and retries while the SMTP server is away.
 * Pass a `jobId` (e.g. derived from an invoice id) to send a mail once however often it is requested.
 * Returns the job id.
 */
export async function sendMail<T extends MailTemplate> (queue: JobQueue, message: MailRequest<T>, options: { jobId?: string } = {}): Promise<string> {
  if (!singleAddress.test(message.to)) throw new InvalidMailRecipient()
  const payload = { to: message.to, template: message.template, data: message.data, headers: message.headers } as SendMailPayload
  return queue.enqueue(sendMailJob, payload, { retries: 5, timeoutMs: 2 * 60_000, ...(options.jobId ? { jobId: options.jobId } : {}) })
}
