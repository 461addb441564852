// The plans of db/plans.json and how they land in the database (the seed and npm run stripe:sync use it);
// which Stripe product and price each maps to is billing's (services/billing/billing.repository.ts).
import { readFile } from 'node:fs/promises'
import type { Kysely } from 'kysely'
import { sql } from './kysely.js'
import type { DB, Entitlements, SessionLimits } from './types.js'

export const plansFile = new URL('./plans.json', import.meta.url)

export interface PlanDefinition {
  id: string
  name: string
  amount: number
  currency: string
  interval: 'month' | 'year'
  trialDays: number
  billedByHour: boolean
  entitlements: Entitlements
  /** The plan's session limits (issue 22); absent: the configured defaults. */
  sessionLimits?: SessionLimits
}

export async function readPlansFile (path: URL | string = plansFile): Promise<PlanDefinition[]> {
  return (JSON.parse(await readFile(path, 'utf8')) as { plans: PlanDefinition[] }).plans
}

/** The plans of the file into the database (ids, prices, entitlements); the Stripe ids they map to are kept. */
export async function upsertPlans (db: Kysely<DB>, plans: PlanDefinition[]) {
  if (plans.length === 0) return
  await db.insertInto('plan').values(plans.map((p, i) => ({
    id: p.id,
    name: p.name,
    amount: p.amount,
    currency: p.currency,
    interval: p.interval,
    trial_days: p.trialDays,
    billed_by_hour: p.billedByHour,
    entitlements: JSON.stringify(p.entitlements),
    session_limits: p.sessionLimits ? JSON.stringify(p.sessionLimits) : null,
    sort_order: i
  }))).onConflict((oc) => oc.column('id').doUpdateSet((eb) => ({
    name: eb.ref('excluded.name'),
    amount: eb.ref('excluded.amount'),
    currency: eb.ref('excluded.currency'),
    interval: eb.ref('excluded.interval'),
    trial_days: eb.ref('excluded.trial_days'),
    billed_by_hour: eb.ref('excluded.billed_by_hour'),
    entitlements: eb.ref('excluded.entitlements'),
    session_limits: eb.ref('excluded.session_limits'),
    sort_order: eb.ref('excluded.sort_order'),
    active: true,
    updated_at: sql`now()`
  }))).execute()
  await db.updateTable('plan').set({ active: false }).where('id', 'not in', plans.map((p) => p.id)).execute()
}
