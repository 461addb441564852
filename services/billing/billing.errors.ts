import { defineError, fieldErrors } from '../errors.js'

export const PlanNotFound = defineError('not_found', 'Plan not found', (id: string) => `Plan ${id} does not exist.`,
  () => fieldErrors('/body/plan', 'is not a plan'))
export const BillingNotConfigured = defineError('unavailable', 'Billing unavailable', () => 'Billing is not configured on this server.')
export const NoBillingAccount = defineError('not_found', 'No billing account', () => 'You have no billing account yet: start with a checkout session.')
export const BadSignature = defineError('bad_request', 'Invalid signature', (why: string) => `The Stripe-Signature header does not verify: ${why}`)
export const PaymentRequired = defineError('payment_required', 'Payment required', (why: string) => why)
export const PlanLimit = defineError('conflict', 'Plan limit reached', (limit: number) =>
  `Your plan runs at most ${limit} container${limit === 1 ? '' : 's'} at once. Stop one, or upgrade.`)
export const PlanForbidsRegion = defineError('forbidden', 'Not in your plan', (region: string) => `Your plan does not include region ${region}.`)
export const PlanForbidsDpi = defineError('forbidden', 'Not in your plan', (max: number) => `Your plan streams at up to ${max} DPI.`)
export const AppNotInPlan = defineError('forbidden', 'Not in your plan', (app: string, plans: string[]) =>
  `${app} is offered on the ${plans.join(', ')} plan${plans.length === 1 ? '' : 's'}, and yours is not one of them. Change plans: POST /v1/billing/checkout-sessions.`)
export const NotAnEvent = defineError('bad_request', 'Not a Stripe event', () => 'The signed payload is not a Stripe event (it needs an id and a type).')

/** The reasons fractal_entitlement raises (SQLSTATE FR008: services/sql-errors.ts) as the 402's detail. */
export function paymentRequired (reason: string, appUrl: string) {
  const upgrade = `POST /v1/billing/checkout-sessions (or ${appUrl}/billing)`
  if (reason.startsWith('hours ')) return new PaymentRequired(`Your plan's ${reason.slice(6)} hours this period are used up. Upgrade: ${upgrade}.`)
  const why = reason === 'past due'
    ? 'Your last payment failed and the grace period is over.'
    : reason.startsWith('status ') ? `Your subscription is ${reason.slice(7)}.` : reason === 'no account' ? 'No account.' : 'Your free trial has ended.'
  return new PaymentRequired(`${why} Choose a plan: ${upgrade}.`)
}
