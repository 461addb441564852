// Factories: arrange rows and tokens in one line each, with unique ids so tests never collide.
import { createHash, randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Role } from '../../plugins/auth.js'
import { accountDepsOf } from '../../routes/accounts/feature.js'
import { openSession } from '../../services/accounts/accounts.service.js'
import { auditContext } from '../../services/audit/audit.service.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { hashPassword } from '../../services/accounts/secrets.js'

const suffix = () => randomBytes(3).toString('hex')

type UserFields = Partial<{ email: string, name: string, role: Role, password: string, verified: boolean, disabled: boolean }>

export function given (app: FastifyInstance) {
  return {
    async region (fields: Partial<{ code: string, name: string, enabled: boolean, sortOrder: number }> = {}) {
      // Letters only (a region code's middle part), 16 of them per hex digit: no collisions within a run.
      const code = fields.code ?? `xx-${randomBytes(6).toString('hex').replace(/[0-9]/g, (d) => 'ghijklmnop'[Number(d)]!)}-1`
      return app.db.insertInto('region').values({
        code,
        name: fields.name ?? `Test region ${code}`,
        enabled: fields.enabled ?? true,
        latitude: 10,
        longitude: 20,
        sort_order: fields.sortOrder ?? 0
      }).returningAll().executeTakeFirstOrThrow()
    },

    async app (fields: Partial<{ id: string, name: string, regions: string[], category: string }> = {}) {
      const id = fields.id ?? `app-${suffix()}`
      const row = await app.db.insertInto('app').values({
        id,
        name: fields.name ?? `App ${id}`,
        description: `The ${id} app`,
        icon_url: `https://cdn.example.test/${id}.svg`,
        category: fields.category ?? 'browser'
      }).returningAll().executeTakeFirstOrThrow()
      if (fields.regions?.length) {
        await app.db.insertInto('app_region')
          .values(fields.regions.map((region) => ({ app_id: id, region_code: region, task_definition: `fractal-${id}:1` })))
          .execute()
      }
      return row
    },

    /** An app offered in a new enabled region, ready for containers. */
    async offer (fields: Partial<{ enabled: boolean }> = {}) {
      const region = await this.region({ enabled: fields.enabled ?? true })
      const offered = await this.app({ regions: [region.code] })
      await app.db.insertInto('cluster').values({ region_code: region.code, name: `fractal-${region.code}-1`, capacity: 10, capacity_provider: `fractal-${region.code}-1-capacity` }).execute()
      return { app: offered.id, region: region.code }
    },

    /** An active host in `region` (no cluster); `secret` is its X-Host-Secret. */
    async host (region: string) {
      const secret = randomBytes(32).toString('base64url')
      const row = await app.db.insertInto('host').values({
        instance_id: `i-${suffix()}${suffix()}`,
        region_code: region,
        ip: '198.51.100.20',
        status: 'active',
        secret_hash: createHash('sha256').update(secret).digest('base64url'),
        last_heartbeat_at: new Date()
      }).returningAll().executeTakeFirstOrThrow()
      return { ...row, secret }
    },

    /** A ready container in the warm pool of an app and region; `secret` is its X-Container-Secret. */
    async warmContainer (offer: { app: string, region: string }) {
      const secret = randomBytes(32).toString('base64url')
      const row = await app.db.insertInto('container').values({
        app_id: offer.app,
        region_code: offer.region,
        user_id: null,
        state: 'available',
        aes_key: randomBytes(16).toString('hex'),
        secret_hash: createHash('sha256').update(secret).digest('base64url'),
        task_arn: `arn:aws:ecs:${offer.region}:000000000000:task/warm/${suffix()}`,
        host_ip: '198.51.100.7',
        port_32262: 41000,
        port_32263: 41001,
        port_32273: 41002
      }).returningAll().executeTakeFirstOrThrow()
      return { ...row, secret }
    },

    /** A signed-in user holding a container from the warm pool (assigned through the API); `container` is the 201 body. */
    async assignedContainer () {
      const offer = await this.offer()
      const warm = await this.warmContainer(offer)
      const user = await this.signedIn()
      const res = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: offer.app }, headers: { ...user.headers, 'idempotency-key': randomUUID() } })
      return { offer, warm, user, container: res.json() }
    },

    /**
     * An access token for a made-up session (no session row): for routes that only check scopes. Its account
     * is real (a token of an account that does not exist is refused): `sub` when it names one, else a new one
     * with `role`.
     */
    async token (claims: Partial<{ sub: string, role: Role, scopes: string[], sid: string }> = {}) {
      const existing = claims.sub && /^[0-9a-f-]{36}$/.test(claims.sub)
        ? await app.db.selectFrom('account').select(['id', 'role']).where('id', '=', claims.sub).executeTakeFirst()
        : undefined
      const account = existing ?? await app.db.insertInto('account').values({
        email: `token-${suffix()}${suffix()}@example.test`, name: 'Token Holder', role: claims.role ?? 'user', password_hash: null, email_verified_at: new Date()
      }).returning(['id', 'role']).executeTakeFirstOrThrow()
      return app.issueAccessToken({ sub: account.id, role: claims.role ?? account.role, scopes: claims.scopes ?? [], sid: claims.sid ?? randomUUID() })
    },

    /** An account with a password (`password`), verified unless said otherwise. */
    async user (fields: UserFields = {}) {
      const password = fields.password ?? 'a-long-unusual-passphrase'
      const account = await app.db.insertInto('account').values({
        email: fields.email ?? `user-${suffix()}@example.test`,
        name: fields.name ?? 'Test User',
        role: fields.role ?? 'user',
        password_hash: await hashPassword(password),
        email_verified_at: fields.verified === false ? null : new Date(),
        disabled_at: fields.disabled ? new Date() : null
      }).returningAll().executeTakeFirstOrThrow()
      return { ...account, password }
    },

    /** A signed-in user: a real session, its access and refresh tokens. */
    async signedIn (fields: UserFields = {}) {
      const account = await this.user(fields)
      const pair = await auditContext.run({ ip: '127.0.0.1', userAgent: 'tap' }, () => openSession(app.db, accountDepsOf(app), account))
      return { account, accessToken: pair.accessToken, refreshToken: pair.refreshToken, headers: bearer(pair.accessToken), scopes: scopesFor(account.role) }
    }
  }
}

export function bearer (token: string) {
  return { authorization: `Bearer ${token}` }
}
