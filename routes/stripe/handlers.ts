import type { Handlers } from '../../openapi/handler-types.js'
import { acceptStripeEvent } from '../../services/billing/billing.service.js'

export const handlers = {
  async stripeWebhook (request) {
    return acceptStripeEvent(this.db, this.billingDeps, request.body as unknown as Buffer, request.headers['stripe-signature'])
  }
} satisfies Handlers<'stripe'>
