// Factories for the partner tests (test/routes/partners and test/routes/partner): partners, keys, their
// users (no password: argon2 would cost more than the tests), containers and usage rows.
import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { ContainerState, PartnerScope } from '../../../db/types.js'
import { newPartnerKey } from '../../../services/partners/partners.keys.js'

const suffix = () => randomBytes(3).toString('hex')

export function partners (app: FastifyInstance) {
  return {
    async partner (name = `Partner ${suffix()}`, createdAt?: Date) {
      return app.db.insertInto('partner').values({ name, ...(createdAt ? { created_at: createdAt } : {}) }).returningAll().executeTakeFirstOrThrow()
    },

    /** A key of `partnerId` (partner:read, a year to live, unless said otherwise); `headers` send it. */
    async key (partnerId: string, fields: Partial<{ scopes: PartnerScope[], expiresAt: Date, revoked: boolean }> = {}) {
      const { key, prefix, hash } = newPartnerKey()
      const row = await app.db.insertInto('partner_api_key').values({
        partner_id: partnerId,
        name: `key ${suffix()}`,
        prefix,
        key_hash: hash,
        scopes: fields.scopes ?? ['partner:read'],
        expires_at: fields.expiresAt ?? new Date(Date.now() + 30 * 86_400_000),
        revoked_at: fields.revoked ? new Date() : null
      }).returningAll().executeTakeFirstOrThrow()
      return { row, key, headers: { 'x-api-key': key } }
    },

    /** A partner with a working key. */
    async withKey (name?: string) {
      const partner = await this.partner(name)
      return { partner, ...(await this.key(partner.id)) }
    },

    async member (partnerId: string | null, fields: Partial<{ email: string, name: string, createdAt: Date, deleted: boolean }> = {}) {
      return app.db.insertInto('account').values({
        email: fields.email ?? `member-${suffix()}@example.test`,
        name: fields.name ?? 'Member',
        password_hash: null,
        email_verified_at: new Date(),
        partner_id: partnerId,
        ...(fields.createdAt ? { created_at: fields.createdAt } : {}),
        ...(fields.deleted ? { deleted_at: new Date() } : {})
      }).returningAll().executeTakeFirstOrThrow()
    },

    async container (userId: string, offer: { app: string, region: string }, state: ContainerState = 'in_use', assignedAt: Date | null = new Date()) {
      return app.db.insertInto('container').values({
        app_id: offer.app,
        region_code: offer.region,
        user_id: userId,
        state,
        aes_key: randomBytes(16).toString('hex'),
        secret_hash: randomBytes(32).toString('base64url'),
        host_ip: '198.51.100.7',
        port_32262: 41000,
        port_32263: 41001,
        port_32273: 41002,
        assigned_at: assignedAt
      }).returningAll().executeTakeFirstOrThrow()
    },

    async usage (userId: string, seconds: number, endedAt: Date) {
      await app.db.insertInto('usage_record').values({ container_id: randomUUID(), user_id: userId, seconds, ended_at: endedAt }).execute()
    }
  }
}
