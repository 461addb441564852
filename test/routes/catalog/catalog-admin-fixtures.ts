// Arrangements shared by the catalog administration tests.
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import { bearer, given } from '../../helpers/given.js'

/** A plan row (no Stripe price): enough for an app to name it. */
export async function plan (app: FastifyInstance, id = `plan-${randomBytes(3).toString('hex')}`) {
  await app.db.insertInto('plan').values({
    id,
    name: `Plan ${id}`,
    amount: 1000,
    currency: 'usd',
    interval: 'month',
    entitlements: JSON.stringify({ concurrentContainers: 1, hoursPerMonth: null, regions: null, maxDpi: 480 })
  }).execute()
  return id
}

/** An operator's headers (a developer: catalog:write) and the account id the audit names. */
export async function operator (app: FastifyInstance) {
  const who = await given(app).signedIn({ role: 'developer' })
  return { id: who.account.id, headers: who.headers }
}

export async function auditOf (app: FastifyInstance, action: string, targetId: string) {
  return app.db.selectFrom('audit_event').selectAll().where('action', '=', action).where('target_id', '=', targetId).execute()
}

export async function purges (app: FastifyInstance) {
  return (await app.queue.counts('cache-purge')).waiting
}

export const garbage = bearer('garbage')
