import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto'
import type { Kysely } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import { defineError } from '../errors.js'
import { sendMail } from '../mail/mail.service.js'
import type { JobQueue } from '../queue.js'
import * as repo from './accounts.repository.js'
import { spendToken } from './accounts.service.js'
import { hashToId, newSecret } from '../hashing.js'

export interface NewsletterDeps {
  queue: JobQueue
  appUrl: string
  /** Public base URL of this API, for the List-Unsubscribe header. */
  apiUrl: string
  /** Key material for the unsubscribe signatures (derived, never used as is). */
  secret: string
}

const InvalidUnsubscribeToken = defineError('token_invalid', 'Invalid unsubscribe link', () => 'This unsubscribe link is not valid.')

const keyOf = (secret: string) => Buffer.from(hkdfSync('sha256', secret, 'fractal', 'newsletter-unsubscribe', 32))

/** A signed, non-expiring unsubscribe token for an address: nothing to store, nothing to look up. */
export function unsubscribeToken (secret: string, email: string): string {
  const address = Buffer.from(email.toLowerCase()).toString('base64url')
  return `${address}.${createHmac('sha256', keyOf(secret)).update(address).digest('base64url')}`
}

function addressOf (secret: string, token: string): string {
  const [address, signature] = token.split('.')
  if (!address || !signature) throw new InvalidUnsubscribeToken()
  const expected = createHmac('sha256', keyOf(secret)).update(address).digest()
  const given = Buffer.from(signature, 'base64url')
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new InvalidUnsubscribeToken()
  return Buffer.from(address, 'base64url').toString('utf8')
}

/** RFC 8058 headers for every newsletter mail to `email`. */
export function newsletterHeaders (deps: Pick<NewsletterDeps, 'apiUrl' | 'secret'>, email: string): Record<string, string> {
  return {
    'List-Unsubscribe': `<${deps.apiUrl}/v1/newsletter/unsubscribe?token=${unsubscribeToken(deps.secret, email)}>`,
    'List-Unsubscribe-Post': 'List-Unsubscribe=One-Click'
  }
}

/** Double opt-in: a confirmation link, unless the address is subscribed already. Same answer either way. */
export async function subscribe (db: Kysely<DB>, deps: NewsletterDeps, email: string) {
  const address = email.toLowerCase()
  const current = await db.selectFrom('newsletter_subscription').select('status').where('email', '=', address).executeTakeFirst()
  if (current?.status !== 'subscribed') {
    await db.insertInto('newsletter_subscription').values({ email: address, status: 'pending' })
      .onConflict((oc) => oc.column('email').doUpdateSet({ status: 'pending' })).execute()
    const token = newSecret()
    await repo.insertEmailToken(db, { token_hash: hashToId(token), purpose: 'newsletter', account_id: null, email: address, expires_at: new Date(Date.now() + 7 * 24 * 3600_000) })
    await sendMail(deps.queue, { to: address, template: 'newsletter-confirm', data: { link: `${deps.appUrl}/newsletter/confirm?token=${token}` } })
  }
  return { email, message: `If ${email} is not subscribed yet, we sent it a link to confirm.` }
}

export async function confirm (db: Kysely<DB>, token: string) {
  return db.transaction().execute(async (trx) => {
    const row = await spendToken(trx, token, ['newsletter'])
    await trx.updateTable('newsletter_subscription').set({ status: 'subscribed', confirmed_at: sql`now()`, unsubscribed_at: null })
      .where('email', '=', row.email).execute()
    return { email: row.email, status: 'subscribed' as const }
  })
}

/** One click, no sign-in: the signed token names the address. Idempotent. */
export async function unsubscribe (db: Kysely<DB>, deps: Pick<NewsletterDeps, 'secret'>, token: string) {
  const email = addressOf(deps.secret, token)
  await db.insertInto('newsletter_subscription').values({ email, status: 'unsubscribed', unsubscribed_at: new Date() })
    .onConflict((oc) => oc.column('email').doUpdateSet({ status: 'unsubscribed', unsubscribed_at: sql`coalesce(newsletter_subscription.unsubscribed_at, now())` }))
    .execute()
  return { email, status: 'unsubscribed' as const }
}
