// A local stand-in for api.stripe.com: a node:http server that the product's real `stripe` client talks to
// (STRIPE_API_URL), answering, statefully, the few endpoints the product calls: customers (with Stripe's
// idempotency keys; deletion), Checkout and portal sessions, subscriptions (retrieve, list, cancel), products,
// prices (lookup keys, transfer), billing meters and meter events. Every request is recorded (method, path,
// form-decoded query and body with Stripe's bracketed keys, Idempotency-Key) so a test can say what was sent.
// A test can make an endpoint answer an error (500, or any Stripe error) or hold its requests until it lets
// them go.
//
// Webhooks go the other way: `stripeEvent` makes an event as Stripe sends it and `deliver` posts it to the
// app signed with the real signing code (Stripe.webhooks.generateTestHeaderString).
import { createHash, randomBytes } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import Stripe from 'stripe'
import type { FastifyInstance } from 'fastify'
import { readPlansFile, type PlanDefinition } from '../../db/plans.js'
import { syncPlansWithStripe } from '../../services/billing/billing.service.js'
import { createStripeClient } from '../../services/billing/billing.stripe.js'
import { build, type Overrides } from './build.js'
import { until } from './wait.js'

type Test = { teardown (fn: () => unknown): void }
type Json = Record<string, any>

export interface StripeRequest {
  method: string
  path: string
  /** The query string, form-decoded, bracketed keys as sent (`lookup_keys[0]`). */
  query: Record<string, string>
  /** The form body, decoded, bracketed keys as sent (`line_items[0][price]`). */
  body: Record<string, string>
  idempotencyKey: string | undefined
  authorization: string | undefined
  /** What the stand-in answered (set once it has). */
  status?: number
}

type Matcher = { method: string, path: string | RegExp }
interface Rule extends Matcher {
  kind: 'fail' | 'hold'
  remaining: number
  status: number
  error: Json
  held: Array<() => void>
  arrived: number
}

export interface Hold {
  /** Requests that have reached the held endpoint (held or let through since). */
  readonly arrived: number
  /** Lets the held requests (and every later one) through, to be answered normally. */
  release (): void
}

const now = () => Math.floor(Date.now() / 1000)
const id = (prefix: string) => `${prefix}_${randomBytes(12).toString('base64url').replace(/[-_]/g, 'x')}`
const matches = (m: Matcher, method: string, path: string) =>
  m.method === method && (typeof m.path === 'string' ? m.path === path : m.path.test(path))

/** `a[b][0][c]=x` → `{ a: { b: [{ c: 'x' }] } }`: what Stripe makes of a form. */
export function unflatten (flat: Record<string, string>): Json {
  const out: Json = {}
  for (const [key, value] of Object.entries(flat)) {
    const parts = key.replace(/\]/g, '').split('[')
    let node: Json = out
    parts.forEach((part, i) => {
      if (i === parts.length - 1) node[part] = value
      else node = (node[part] ??= /^\d+$/.test(parts[i + 1]!) ? [] : {})
    })
  }
  return out
}

class StripeError extends Error {
  constructor (readonly status: number, readonly error: Json) { super(error.message) }
}
const missing = (what: string, key: string) =>
  new StripeError(404, { type: 'invalid_request_error', code: 'resource_missing', message: `No such ${what}: '${key}'`, param: 'id' })
const invalid = (message: string, param?: string, code = 'parameter_invalid') =>
  new StripeError(400, { type: 'invalid_request_error', code, message, ...(param ? { param } : {}) })

export async function startStripeStandIn (t: Test, options: { secretKey?: string } = {}) {
  const requests: StripeRequest[] = []
  const rules: Rule[] = []
  const customers = new Map<string, Json>()
  const products = new Map<string, Json>()
  const prices = new Map<string, Json>()
  const meters = new Map<string, Json>()
  const meterEvents: Json[] = []
  const checkoutSessions = new Map<string, Json>()
  const portalSessions: Json[] = []
  const subscriptions = new Map<string, Json>()
  // Stripe keeps the first answer to an idempotency key (24 h) and refuses the key with other parameters.
  const idempotent = new Map<string, { fingerprint: string, status: number, body: Json }>()

  const list = (url: string, data: Json[], limit: number) => ({ object: 'list', url, has_more: data.length > limit, data: data.slice(0, limit) })
  const page = (items: Json[], q: Record<string, string>) => {
    const after = q.starting_after ? items.findIndex((i) => i.id === q.starting_after) + 1 : 0
    return items.slice(after)
  }

  function subscriptionObject (fields: {
    customer: string,
    price: string,
    status?: string,
    metadata?: Record<string, string>,
    trialEnd?: number | null,
    cancelAtPeriodEnd?: boolean,
    periodStart?: number,
    periodEnd?: number,
    id?: string
  }): Json {
    const price = prices.get(fields.price) ?? { id: fields.price, object: 'price' }
    const start = fields.periodStart ?? now()
    const end = fields.periodEnd ?? start + 30 * 86_400
    const subId = fields.id ?? id('sub')
    return {
      id: subId,
      object: 'subscription',
      customer: fields.customer,
      status: fields.status ?? 'active',
      metadata: fields.metadata ?? {},
      cancel_at_period_end: fields.cancelAtPeriodEnd ?? false,
      trial_end: fields.trialEnd ?? null,
      created: start,
      livemode: false,
      items: {
        object: 'list',
        has_more: false,
        url: `/v1/subscription_items?subscription=${subId}`,
        data: [{ id: id('si'), object: 'subscription_item', price, quantity: 1, subscription: subId, current_period_start: start, current_period_end: end }]
      }
    }
  }

  function route (method: string, path: string, q: Record<string, string>, body: Json): { status?: number, body: Json } {
    let m: RegExpMatchArray | null
    if (method === 'POST' && path === '/v1/customers') {
      const customer = { id: id('cus'), object: 'customer', created: now(), email: body.email ?? null, name: body.name ?? null, metadata: body.metadata ?? {}, livemode: false }
      customers.set(customer.id, customer)
      return { body: customer }
    }
    if (method === 'POST' && path === '/v1/checkout/sessions') {
      const customer = body.customer as string | undefined
      if (customer && (!customers.has(customer) || customers.get(customer)!.deleted)) throw invalid(`No such customer: '${customer}'`, 'customer', 'resource_missing')
      for (const item of (body.line_items ?? []) as Json[]) {
        if (!prices.has(item.price)) throw invalid(`No such price: '${item.price}'`, 'line_items[0][price]', 'resource_missing')
      }
      const sessionId = id('cs_test')
      const session = {
        id: sessionId,
        object: 'checkout.session',
        mode: body.mode,
        status: 'open',
        customer: customer ?? null,
        client_reference_id: body.client_reference_id ?? null,
        url: `https://checkout.stripe.test/c/pay/${sessionId}`,
        expires_at: now() + 86_400,
        success_url: body.success_url,
        cancel_url: body.cancel_url,
        subscription: null,
        livemode: false,
        request: body
      }
      checkoutSessions.set(sessionId, session)
      return { body: session }
    }
    if (method === 'POST' && path === '/v1/billing_portal/sessions') {
      if (!customers.has(body.customer) || customers.get(body.customer)!.deleted) throw invalid(`No such customer: '${body.customer}'`, 'customer', 'resource_missing')
      const session = { id: id('bps'), object: 'billing_portal.session', customer: body.customer, return_url: body.return_url ?? null, url: `https://billing.stripe.test/p/session/${id('test')}`, created: now(), livemode: false }
      portalSessions.push(session)
      return { body: session }
    }
    // List subscriptions (https://docs.stripe.com/api/subscriptions/list): newest first; without `status`,
    // every one that is not canceled; `all`, `ended` (canceled or incomplete_expired) or one status otherwise.
    if (method === 'GET' && path === '/v1/subscriptions') {
      const found = [...subscriptions.values()].reverse().filter((sub) =>
        (q.customer === undefined || sub.customer === q.customer) &&
        (q.status === 'all' || (q.status === undefined
          ? sub.status !== 'canceled'
          : q.status === 'ended' ? ['canceled', 'incomplete_expired'].includes(sub.status) : sub.status === q.status)))
      return { body: list('/v1/subscriptions', page(found, q), Number(q.limit ?? 10)) }
    }
    // Cancel a subscription (https://docs.stripe.com/api/subscriptions/cancel): at once, answering the
    // subscription, now canceled. Cancelling one that is canceled already is not documented: not modelled.
    if (method === 'DELETE' && (m = path.match(/^\/v1\/subscriptions\/([^/]+)$/))) {
      const sub = subscriptions.get(decodeURIComponent(m[1]!))
      if (!sub) throw missing('subscription', decodeURIComponent(m[1]!))
      if (sub.status === 'canceled') throw new Error('cancelling a canceled subscription is not modelled')
      cancel(sub)
      return { body: sub }
    }
    // Delete a customer (https://docs.stripe.com/api/customers/delete): "Permanently deletes a customer. It
    // cannot be undone. Also immediately cancels any active subscriptions on the customer." Answers
    // `{ id, object: 'customer', deleted: true }`; a customer that does not exist raises an error (404).
    if (method === 'DELETE' && (m = path.match(/^\/v1\/customers\/([^/]+)$/))) {
      const customerId = decodeURIComponent(m[1]!)
      const customer = customers.get(customerId)
      if (!customer || customer.deleted) throw missing('customer', customerId)
      return { body: removeCustomer(customerId) }
    }
    if (method === 'GET' && (m = path.match(/^\/v1\/subscriptions\/([^/]+)$/))) {
      const sub = subscriptions.get(decodeURIComponent(m[1]!))
      if (!sub) throw missing('subscription', m[1]!)
      return { body: sub }
    }
    if (method === 'POST' && path === '/v1/products') {
      const productId = body.id ?? id('prod')
      if (products.has(productId)) throw invalid('Product already exists.', 'id', 'resource_already_exists')
      const product = { id: productId, object: 'product', name: body.name, active: true, created: now(), livemode: false }
      products.set(productId, product)
      return { body: product }
    }
    if (method === 'POST' && (m = path.match(/^\/v1\/products\/([^/]+)$/))) {
      const product = products.get(decodeURIComponent(m[1]!))
      if (!product) throw missing('product', decodeURIComponent(m[1]!))
      if (body.name !== undefined) product.name = body.name
      if (body.active !== undefined) product.active = body.active === 'true'
      return { body: product }
    }
    if (method === 'GET' && path === '/v1/prices') {
      const query = unflatten(q)
      const keys = query.lookup_keys as string[] | undefined
      const found = [...prices.values()].filter((p) =>
        (keys === undefined || keys.includes(p.lookup_key)) &&
        (query.active === undefined || p.active === (query.active === 'true')) &&
        (query.product === undefined || p.product === query.product))
      return { body: list('/v1/prices', page(found, q), Number(q.limit ?? 10)) }
    }
    if (method === 'POST' && path === '/v1/prices') {
      if (!products.has(body.product)) throw invalid(`No such product: '${body.product}'`, 'product', 'resource_missing')
      if (body.recurring?.meter && !meters.has(body.recurring.meter)) throw invalid(`No such billing meter: '${body.recurring.meter}'`, 'recurring[meter]', 'resource_missing')
      const holder = body.lookup_key ? [...prices.values()].find((p) => p.lookup_key === body.lookup_key) : undefined
      if (holder && body.transfer_lookup_key !== 'true') throw invalid(`A price (\`${holder.id}\`) already uses that lookup key.`, 'lookup_key')
      if (holder) holder.lookup_key = null
      const price = {
        id: id('price'),
        object: 'price',
        active: true,
        product: body.product,
        currency: body.currency,
        unit_amount: Number(body.unit_amount),
        lookup_key: body.lookup_key ?? null,
        recurring: body.recurring
          ? { interval: body.recurring.interval, interval_count: 1, usage_type: body.recurring.usage_type ?? 'licensed', meter: body.recurring.meter ?? null }
          : null,
        type: body.recurring ? 'recurring' : 'one_time',
        created: now(),
        livemode: false
      }
      prices.set(price.id, price)
      return { body: price }
    }
    if (method === 'GET' && path === '/v1/billing/meters') {
      const found = [...meters.values()].filter((mt) => q.status === undefined || mt.status === q.status)
      return { body: list('/v1/billing/meters', page(found, q), Number(q.limit ?? 10)) }
    }
    if (method === 'POST' && path === '/v1/billing/meters') {
      if ([...meters.values()].some((mt) => mt.event_name === body.event_name)) throw invalid('A meter with this event_name already exists.', 'event_name')
      const meter = {
        id: id('mtr'),
        object: 'billing.meter',
        status: 'active',
        display_name: body.display_name,
        event_name: body.event_name,
        default_aggregation: body.default_aggregation,
        customer_mapping: body.customer_mapping,
        value_settings: body.value_settings,
        created: now(),
        livemode: false
      }
      meters.set(meter.id, meter)
      return { body: meter }
    }
    if (method === 'POST' && path === '/v1/billing/meter_events') {
      if (![...meters.values()].some((mt) => mt.event_name === body.event_name && mt.status === 'active')) {
        throw invalid(`No active meter was found matching event_name ${body.event_name}.`, 'event_name')
      }
      const event = { object: 'billing.meter_event', created: now(), event_name: body.event_name, identifier: body.identifier ?? id('mev'), payload: body.payload ?? {}, timestamp: Number(body.timestamp ?? now()), livemode: false }
      // Stripe keeps one event per identifier (a retry is no second usage).
      if (!meterEvents.some((e) => e.identifier === event.identifier)) meterEvents.push(event)
      return { body: event }
    }
    throw new StripeError(404, { type: 'invalid_request_error', message: `Unrecognized request URL (${method}: ${path}).` })
  }

  function cancel (sub: Json) {
    sub.status = 'canceled'
    sub.canceled_at = now()
    sub.ended_at = now()
  }

  /** The customer deleted, its subscriptions that have not ended cancelled (Stripe's delete customer). */
  function removeCustomer (customerId: string) {
    const customer = customers.get(customerId)
    if (customer) customer.deleted = true
    for (const sub of subscriptions.values()) {
      if (sub.customer === customerId && !['canceled', 'incomplete_expired'].includes(sub.status)) cancel(sub)
    }
    return { id: customerId, object: 'customer', deleted: true }
  }

  /** A subscription as Stripe would hold it (the items carry the current period, API 2025+). */
  function putSubscription (fields: Parameters<typeof subscriptionObject>[0]): Json {
    const sub = subscriptionObject(fields)
    subscriptions.set(sub.id, sub)
    return sub
  }

  const send = (res: ServerResponse, record: StripeRequest, status: number, body: Json) => {
    record.status = status
    const text = JSON.stringify(body)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), 'request-id': id('req'), 'stripe-version': '2026-10-28.endive' })
    res.end(text)
  }

  function answer (res: ServerResponse, record: StripeRequest) {
    if (options.secretKey && record.authorization !== `Bearer ${options.secretKey}`) {
      return send(res, record, 401, { error: { type: 'invalid_request_error', message: 'Invalid API Key provided: sk_test_****' } })
    }
    const key = record.method === 'POST' ? record.idempotencyKey : undefined
    const fingerprint = createHash('sha256').update(`${record.path}\n${JSON.stringify(record.body)}`).digest('hex')
    if (key) {
      const seen = idempotent.get(key)
      if (seen && seen.fingerprint !== fingerprint) {
        return send(res, record, 400, { error: { type: 'idempotency_error', message: `Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '${key}' if you meant to execute a different request.` } })
      }
      if (seen) return send(res, record, seen.status, seen.body)
    }
    let status = 200
    let body: Json
    try {
      const out = route(record.method, record.path, record.query, unflatten(record.body))
      status = out.status ?? 200
      body = out.body
    } catch (err) {
      const known = err instanceof StripeError
      status = known ? err.status : 500
      body = { error: known ? err.error : { type: 'api_error', message: `stand-in: ${(err as Error).message}` } }
    }
    // A copy: later changes to the object (a deleted customer, say) do not change what was answered.
    if (key) idempotent.set(key, { fingerprint, status, body: structuredClone(body) })
    return send(res, record, status, body)
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const url = new URL(req.url ?? '/', 'http://stand-in')
      const record: StripeRequest = {
        method: req.method ?? 'GET',
        path: url.pathname,
        query: Object.fromEntries(url.searchParams),
        body: Object.fromEntries(new URLSearchParams(Buffer.concat(chunks).toString('utf8'))),
        idempotencyKey: req.headers['idempotency-key'] as string | undefined,
        authorization: req.headers.authorization
      }
      requests.push(record)
      const rule = rules.find((r) => r.remaining > 0 && matches(r, record.method, record.path))
      if (rule) {
        rule.arrived++
        if (rule.kind === 'fail') {
          rule.remaining--
          return send(res, record, rule.status, { error: rule.error })
        }
        return rule.held.push(() => answer(res, record))
      }
      answer(res, record)
    })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  let closed: Promise<void> | undefined
  const close = () => {
    closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve())
      server.closeAllConnections()
    })
    return closed
  }
  t.teardown(close)

  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    customers,
    products,
    prices,
    meters,
    meterEvents,
    checkoutSessions,
    portalSessions,
    subscriptions,
    close,

    /** The recorded requests to one endpoint, in order. */
    calls (method: string, path: string | RegExp): StripeRequest[] {
      return requests.filter((r) => matches({ method, path }, r.method, r.path))
    },

    /** Forgets the recorded requests (not the state). */
    clearRequests () { requests.length = 0 },

    /**
     * Makes an endpoint answer an error `times` times (every time by default): 500 `api_error` unless told.
     * Answers a function that ends the failure.
     */
    fail (matcher: Matcher, options: { status?: number, times?: number, error?: Json } = {}) {
      const status = options.status ?? 500
      const rule: Rule = {
        ...matcher,
        kind: 'fail',
        remaining: options.times ?? Infinity,
        status,
        error: options.error ?? (status >= 500 ? { type: 'api_error', message: 'An unknown error occurred.' } : { type: 'invalid_request_error', message: 'Refused by the stand-in.' }),
        held: [],
        arrived: 0
      }
      rules.unshift(rule)
      return () => { rule.remaining = 0 }
    },

    /** Holds every request to an endpoint, unanswered (a hung Stripe), until `release()`. */
    hold (matcher: Matcher): Hold {
      const rule: Rule = { ...matcher, kind: 'hold', remaining: Infinity, status: 0, error: {}, held: [], arrived: 0 }
      rules.unshift(rule)
      return {
        get arrived () { return rule.arrived },
        release () {
          rule.remaining = 0
          for (const go of rule.held.splice(0)) go()
        }
      }
    },

    /**
     * A customer deleted in the dashboard: Stripe answers "No such customer" for it from now on, and its
     * subscriptions are cancelled.
     */
    deleteCustomer (customerId: string) {
      return removeCustomer(customerId)
    },

    /** A subscription as Stripe would hold it (the items carry the current period, API 2025+). */
    putSubscription,

    /**
     * The user paid in Checkout: the subscription exists (the session's price, its subscription_data metadata
     * and trial) and the session is complete. Answers both, for the events a test then delivers.
     */
    completeCheckout (sessionId: string, fields: { status?: string } = {}) {
      const session = checkoutSessions.get(sessionId)
      if (!session) throw new Error(`no checkout session ${sessionId}`)
      const asked = session.request as Json
      const trialDays = Number(asked.subscription_data?.trial_period_days ?? 0)
      const sub = putSubscription({
        customer: session.customer,
        price: asked.line_items[0].price,
        metadata: asked.subscription_data?.metadata ?? {},
        status: fields.status ?? (trialDays > 0 ? 'trialing' : 'active'),
        trialEnd: trialDays > 0 ? now() + trialDays * 86_400 : null
      })
      session.status = 'complete'
      session.subscription = sub.id
      return { session, subscription: sub }
    }
  }
}

export type StripeStandIn = Awaited<ReturnType<typeof startStripeStandIn>>

// ---- Webhooks -------------------------------------------------------------------------------------------

export const testStripeKey = 'sk_test_fractal_stand_in'
export const testWebhookSecret = 'whsec_fractal_stand_in_signing_secret'

/** An event as Stripe delivers it. `created` (seconds) orders events; ids are unique unless given. */
export function stripeEvent (type: string, object: Json, fields: { id?: string, created?: number } = {}) {
  return {
    id: fields.id ?? id('evt'),
    object: 'event',
    api_version: '2026-10-28.endive',
    created: fields.created ?? now(),
    type,
    data: { object },
    livemode: false,
    pending_webhooks: 1,
    request: { id: null, idempotency_key: null }
  }
}

/** Headers and body of a delivery, signed with the real signing code. */
export function signedDelivery (event: object | string, secret = testWebhookSecret) {
  const payload = typeof event === 'string' ? event : JSON.stringify(event)
  return {
    payload,
    headers: { 'content-type': 'application/json; charset=utf-8', 'stripe-signature': Stripe.webhooks.generateTestHeaderString({ payload, secret }) }
  }
}

/** Stripe posts an event to the webhook. */
export function deliver (app: FastifyInstance, event: object | string, secret = testWebhookSecret) {
  const { payload, headers } = signedDelivery(event, secret)
  return app.inject({ method: 'POST', url: '/v1/billing/stripe-webhook', payload, headers })
}

// ---- An app billing against the stand-in ----------------------------------------------------------------

/**
 * An app with Stripe configured against a fresh stand-in, billing enforced, and (unless `sync: false`) the
 * plans of db/plans.json synced the way `npm run stripe:sync` does; the request log starts empty.
 */
export async function billingApp (t: Test, overrides: Overrides = {}, options: { sync?: boolean, plans?: PlanDefinition[] } = {}) {
  const stripe = await startStripeStandIn(t)
  const app = await build(t, { STRIPE_SECRET_KEY: testStripeKey, STRIPE_WEBHOOK_SECRET: testWebhookSecret, STRIPE_API_URL: stripe.url, ...overrides })
  const plans = options.plans ?? await readPlansFile()
  let priceOf = new Map<string, { product: string, price: string }>()
  if (options.sync !== false) priceOf = await syncPlansWithStripe(app.db, (await createStripeClient(app.config.billing))!, plans)
  stripe.clearRequests()
  return {
    app,
    stripe,
    plans,
    /** The Stripe price id of a plan. */
    price (plan: string) {
      const found = priceOf.get(plan)
      if (!found) throw new Error(`plan ${plan} was not synced`)
      return found.price
    }
  }
}

/** Until the worker has processed a stored event (its row has processed_at). */
export function processed (app: FastifyInstance, eventId: string, ms = 10000) {
  return until(async () => {
    const row = await app.db.selectFrom('stripe_event').select('processed_at').where('id', '=', eventId).executeTakeFirst()
    return row?.processed_at != null
  }, ms)
}

/** Delivers an event and waits for the worker (started by the caller) to process it. */
export async function deliverAndProcess (app: FastifyInstance, event: { id: string }) {
  const res = await deliver(app, event)
  if (res.statusCode !== 200) throw new Error(`webhook answered ${res.statusCode}: ${res.body}`)
  if (!await processed(app, event.id)) throw new Error(`event ${event.id} was not processed`)
  return res
}

/**
 * A user subscribed the way it happens: a checkout through the API, paid at Stripe (the stand-in), then the
 * subscription's `customer.subscription.created` event delivered and processed (the worker must run).
 */
export async function subscribe (app: FastifyInstance, stripe: StripeStandIn, headers: Record<string, string>, plan: string, fields: { status?: string, created?: number } = {}) {
  const res = await app.inject({ method: 'POST', url: '/v1/billing/checkout-sessions', payload: { plan }, headers })
  if (res.statusCode !== 201) throw new Error(`checkout answered ${res.statusCode}: ${res.body}`)
  const sessionId = new URL(res.json().url).pathname.split('/').pop()!
  const { session, subscription } = stripe.completeCheckout(sessionId, fields.status ? { status: fields.status } : {})
  const event = stripeEvent('customer.subscription.created', subscription, fields.created ? { created: fields.created } : {})
  await deliverAndProcess(app, event)
  return { session, subscription, customer: session.customer as string, event }
}
