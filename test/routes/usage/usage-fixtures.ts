// Usage as the containers leave it: a stopped container row and its usage record.
import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'

export function usageOf (app: FastifyInstance) {
  return {
    async record (fields: { userId: string, app: string, region: string, seconds: number, endedAt: string, planId?: string | null }) {
      const id = randomUUID()
      await app.db.insertInto('container').values({
        id,
        user_id: fields.userId,
        app_id: fields.app,
        region_code: fields.region,
        state: 'stopped',
        aes_key: randomBytes(16).toString('hex'),
        secret_hash: randomBytes(16).toString('hex')
      }).execute()
      await app.db.insertInto('usage_record').values({
        container_id: id,
        user_id: fields.userId,
        seconds: fields.seconds,
        ended_at: new Date(fields.endedAt),
        ...(fields.planId !== undefined ? { plan_id: fields.planId } : {})
      }).execute()
      return id
    }
  }
}
