import type { FastifyInstance } from 'fastify'
import type { components } from '../../openapi/schema.js'
import type { Handlers } from '../../openapi/handler-types.js'
import * as logs from '../../services/logs/logs.service.js'
import { principalOf } from '../request-context.js'

/** A log with its download URL once stored: presigned (S3) or this API's content URL (local store). */
async function presentLog (app: FastifyInstance, row: logs.LogRow): Promise<components['schemas']['LogUpload']> {
  let downloadUrl: string | null = null
  if (row.status === 'stored') {
    downloadUrl = await app.logDeps.store.presign(row.object_key, app.config.logs.downloadTtlS) ??
      `${app.config.publicUrl ?? ''}/v1/logs/${row.id}/content`
  }
  return {
    id: row.id,
    sender: row.sender,
    userId: row.user_id,
    containerId: row.container_id,
    bytes: row.bytes,
    status: row.status,
    createdAt: row.created_at.toISOString(),
    storedAt: row.stored_at?.toISOString() ?? null,
    downloadUrl
  }
}

export const handlers = {
  async uploadLog (request, reply) {
    const from: logs.LogSender = request.container
      ? { kind: 'container', containerId: request.container.id, userId: request.container.user_id }
      : { kind: 'user', userId: principalOf(request).userId }
    const row = await logs.acceptLog(this.db, this.logDeps, from, { sender: request.query.sender, containerId: request.query.containerId, body: request.body })
    reply.code(202).header('location', `/v1/logs/${row.id}/content`)
    return presentLog(this, row)
  },

  async listMyLogs (request) {
    const page = await logs.listLogs(this.db, { limit: request.query.limit ?? 20, cursor: request.query.cursor, user: principalOf(request).userId })
    return { items: await Promise.all(page.items.map((row) => presentLog(this, row))), nextCursor: page.nextCursor }
  },

  async listLogs (request) {
    const page = await logs.listLogs(this.db, { ...request.query, limit: request.query.limit ?? 20 })
    return { items: await Promise.all(page.items.map((row) => presentLog(this, row))), nextCursor: page.nextCursor }
  },

  async getLogContent (request, reply) {
    const stream = await logs.logContent(this.db, this.logDeps.store, principalOf(request), request.params.logId)
    reply.type('application/gzip').header('content-disposition', `attachment; filename="${request.params.logId}.txt.gz"`)
    return stream
  }
} satisfies Handlers<'logs'>
