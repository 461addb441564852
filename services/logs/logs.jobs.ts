import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import type { JobDefinition } from '../queue.js'
import { storeLog, uploadLogJob, type UploadLogPayload } from './logs.service.js'
import type { LogStore } from './logs.store.js'

export function createUploadLogJob (db: Kysely<DB>, store: LogStore): JobDefinition<UploadLogPayload> {
  return { ...uploadLogJob, handle: (data, ctx) => storeLog(db, store, data, ctx.lastAttempt) }
}
