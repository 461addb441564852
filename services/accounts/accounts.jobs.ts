import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import { auditContext } from '../audit/audit.service.js'
import type { JobDefinition } from '../queue.js'
import { deleteAccountRow } from './accounts.repository.js'
import { mailPasswordReset, passwordResetJob, purgeAccountJob, type AccountDeps, type PasswordResetPayload } from './accounts.service.js'

export interface PurgeAccountPayload { accountId: string }

/**
 * What deleting an account removes, in order, before the row itself. Each step must be idempotent (a
 * retried job runs them again). Billing (cancel the subscription) and containers (stop every running
 * one) add theirs through the accounts feature's contract, `app.accountDeletionSteps`.
 */
export type AccountDeletionStep = (accountId: string) => Promise<void>

export function createAccountJobs (deps: { db: Kysely<DB>, steps: AccountDeletionStep[], accounts: AccountDeps }): JobDefinition[] {
  return [{
    ...passwordResetJob,
    // The audit row it writes says who asked, from where: the request's context, carried in the payload.
    handle: (data: PasswordResetPayload) => auditContext.run(data.ctx, () => mailPasswordReset(deps.db, deps.accounts, data.email))
  }, {
    ...purgeAccountJob,
    async handle (data: PurgeAccountPayload) {
      for (const step of deps.steps) await step(data.accountId)
      await deleteAccountRow(deps.db, data.accountId)
      return { purged: data.accountId }
    }
  }]
}
