import t from 'tap'
import { newsletterDepsOf } from '../../../routes/accounts/feature.js'
import { newsletterHeaders } from '../../../services/accounts/newsletter.js'
import { build } from '../../helpers/build.js'
import { startMailbox } from '../../helpers/mailbox.js'

async function setup (t: Parameters<typeof build>[0]) {
  const mailbox = await startMailbox(t)
  const app = await build(t, { SMTP_URL: mailbox.url, PUBLIC_URL: 'https://api.fractal.test' })
  app.queue.startWorker(2)
  return { app, mailbox }
}

const tokenOf = (link: string) => new URL(link).searchParams.get('token')!

t.test('subscribeNewsletter › valid › double opt-in: a confirmation mail, subscribed only once confirmed', async (t) => {
  const { app, mailbox } = await setup(t)
  const res = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions', payload: { email: 'Reader@Example.test' } })
  t.equal(res.statusCode, 202)
  const row = await app.db.selectFrom('newsletter_subscription').selectAll().executeTakeFirstOrThrow()
  t.match(row, { email: 'reader@example.test', status: 'pending' })

  const mail = await mailbox.waitFor('reader@example.test')
  const confirm = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token: tokenOf(mailbox.linkIn(mail, 'newsletter/confirm')) } })
  t.equal(confirm.statusCode, 200)
  t.same(confirm.json(), { email: 'reader@example.test', status: 'subscribed' })

  const again = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions', payload: { email: 'Reader@Example.test' } })
  t.same(again.json(), res.json(), 'the same answer for a subscribed address')
  await new Promise((resolve) => setTimeout(resolve, 300))
  t.equal(mailbox.messages.length, 1, 'no second confirmation for a subscribed address')
})

t.test('confirmNewsletter › invalid input › a used, unknown or malformed token is a 400', async (t) => {
  const { app, mailbox } = await setup(t)
  await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions', payload: { email: 'r2@example.test' } })
  const token = tokenOf(mailbox.linkIn(await mailbox.waitFor('r2@example.test'), 'newsletter/confirm'))
  await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token } })
  const used = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token } })
  t.equal(used.json().code, 'token_used')
  const unknown = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token: 'x'.repeat(43) } })
  t.equal(unknown.json().code, 'token_invalid')
  const malformed = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token: 'short' } })
  t.equal(malformed.json().code, 'validation_failed')
})

t.test('subscribeNewsletter › invalid input › a bad address or extra fields are a 400 and nothing is stored', async (t) => {
  const { app } = await setup(t)
  for (const payload of [{ email: 'not-an-address' }, { email: 'a@example.test', admin: true }, {}]) {
    const res = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions', payload })
    t.equal(res.statusCode, 400, JSON.stringify(payload))
  }
  t.equal((await app.db.selectFrom('newsletter_subscription').selectAll().execute()).length, 0)
})

t.test('unsubscribeNewsletter › valid › the List-Unsubscribe URL takes the RFC 8058 one-click POST', async (t) => {
  const { app } = await setup(t)
  await app.db.insertInto('newsletter_subscription').values({ email: 'fan@example.test', status: 'subscribed' }).execute()
  const headers = newsletterHeaders(newsletterDepsOf(app), 'fan@example.test')
  t.equal(headers['List-Unsubscribe-Post'], 'List-Unsubscribe=One-Click')
  const url = new URL(/^<(.+)>$/.exec(headers['List-Unsubscribe']!)![1]!)
  t.equal(url.origin, 'https://api.fractal.test')

  const res = await app.inject({
    method: 'POST',
    url: url.pathname + url.search,
    payload: 'List-Unsubscribe=One-Click',
    headers: { 'content-type': 'application/x-www-form-urlencoded' }
  })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { email: 'fan@example.test', status: 'unsubscribed' })
  const twice = await app.inject({ method: 'POST', url: url.pathname + url.search })
  t.equal(twice.statusCode, 200, 'unsubscribing twice is fine')
  const row = await app.db.selectFrom('newsletter_subscription').selectAll().executeTakeFirstOrThrow()
  t.equal(row.status, 'unsubscribed')
})

t.test('unsubscribeNewsletter › invalid input › a forged token or a JSON body is refused', async (t) => {
  const { app } = await setup(t)
  const forged = `${Buffer.from('victim@example.test').toString('base64url')}.${'A'.repeat(43)}`
  const res = await app.inject({ method: 'POST', url: `/v1/newsletter/unsubscribe?token=${forged}` })
  t.equal(res.statusCode, 400)
  t.equal(res.json().code, 'token_invalid')
  const json = await app.inject({ method: 'POST', url: `/v1/newsletter/unsubscribe?token=${forged}`, payload: { a: 1 } })
  t.equal(json.statusCode, 415)
  const missing = await app.inject({ method: 'POST', url: '/v1/newsletter/unsubscribe' })
  t.equal(missing.statusCode, 400)
  t.equal((await app.db.selectFrom('newsletter_subscription').selectAll().execute()).length, 0)
})

t.test('confirmNewsletter › valid › the link from the mail subscribes the address, and a later subscribe sends nothing', async (t) => {
  const { app, mailbox } = await setup(t)
  await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions', payload: { email: 'c@example.test' } })
  const token = tokenOf(mailbox.linkIn(await mailbox.waitFor('c@example.test'), 'newsletter/confirm'))
  const res = await app.inject({ method: 'POST', url: '/v1/newsletter/subscriptions/confirm', payload: { token } })
  t.equal(res.statusCode, 200)
  t.same(res.json(), { email: 'c@example.test', status: 'subscribed' })
  const row = await app.db.selectFrom('newsletter_subscription').selectAll().where('email', '=', 'c@example.test').executeTakeFirstOrThrow()
  t.equal(row.status, 'subscribed')
  t.ok(row.confirmed_at)
})
