import type { FastifyInstance } from 'fastify'
import type { Handlers } from '../../openapi/handler-types.js'
import * as pools from '../../services/containers/containers.warm-pools.js'
import { principalOf } from '../request-context.js'
import { presentPool, presentSchedule } from './present.js'

/** What pools are read with: the app's clock, the default maximum age. */
const readWith = (app: FastifyInstance) => ({ now: new Date(app.clock.now()), defaultMaxAgeSeconds: app.config.containers.warmPoolMaxAgeS })

export const handlers = {
  async listWarmPools (request) {
    const { limit, cursor, app, region } = request.query
    const page = await pools.listWarmPools(this.db, { ...readWith(this), limit: limit ?? 20, cursor, app, region })
    return { items: page.items.map(presentPool), nextCursor: page.nextCursor }
  },

  async setWarmPoolTarget (request) {
    const { appId, region } = request.params
    return presentPool(await pools.setWarmPoolTarget(this.db, principalOf(request).userId, appId, region, request.body.target, readWith(this)))
  },

  async updateWarmPool (request) {
    const { appId, region } = request.params
    return presentPool(await pools.updateWarmPool(this.db, principalOf(request).userId, appId, region, request.body, readWith(this)))
  },

  async recycleWarmPool (request, reply) {
    const { appId, region } = request.params
    const pool = await pools.recycleWarmPool(this.db, principalOf(request).userId, appId, region, readWith(this))
    reply.code(202)
    return presentPool(pool)
  },

  async listWarmPoolSchedules (request) {
    const rows = await pools.listWarmPoolSchedules(this.db, request.params.appId, request.params.region)
    return { items: rows.map(presentSchedule) }
  },

  async createWarmPoolSchedule (request, reply) {
    const { appId, region } = request.params
    const row = await pools.createWarmPoolSchedule(this.db, principalOf(request).userId, appId, region, request.body)
    reply.code(201).header('location', `/v1/admin/warm-pools/${appId}/${region}/schedules`)
    return presentSchedule(row)
  },

  async deleteWarmPoolSchedule (request, reply) {
    const { appId, region, scheduleId } = request.params
    await pools.deleteWarmPoolSchedule(this.db, principalOf(request).userId, appId, region, scheduleId)
    return reply.code(204).send()
  }
} satisfies Handlers<'warm-pools'>
