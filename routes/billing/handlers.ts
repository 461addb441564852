import type { Handlers } from '../../openapi/handler-types.js'
import * as billing from '../../services/billing/billing.service.js'
import { resolveLimits } from '../../services/containers/containers.sessions.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async listPlans () {
    const plans = await billing.listPlans(this.db)
    return {
      items: plans.map((p) => ({
        id: p.id,
        name: p.name,
        price: p.amount,
        interval: p.interval,
        currency: p.currency,
        trialDays: p.trial_days,
        billedByHour: p.billed_by_hour,
        entitlements: p.entitlements,
        // What the plan's sessions get (the configured defaults where it sets none); apps may override them.
        sessionLimits: resolveLimits(this.config.containers.sessions.defaults, p.session_limits, null)
      }))
    }
  },

  async createCheckoutSession (request, reply) {
    reply.code(201)
    return billing.createCheckout(this.db, this.billingDeps, principalOf(request).userId, request.body.plan)
  },

  async createPortalSession (request, reply) {
    reply.code(201)
    return billing.createPortal(this.db, this.billingDeps, principalOf(request).userId)
  },

  async getSubscription (request) {
    return billing.subscriptionOf(this.db, this.billingDeps, principalOf(request).userId)
  }
} satisfies Handlers<'billing'>
