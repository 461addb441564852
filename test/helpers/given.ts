// Factories: arrange rows and tokens in one line each, with unique ids so tests never collide.
import { randomBytes, randomUUID } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Role } from '../../plugins/auth.js'
import { openSession } from '../../services/accounts/accounts.service.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { hashPassword } from '../../services/accounts/secrets.js'

const suffix = () => randomBytes(3).toString('hex')

type UserFields = Partial<{ email: string, name: string, role: Role, password: string, verified: boolean, disabled: boolean }>

export function given (app: FastifyInstance) {
  return {
    async region (fields: Partial<{ code: string, name: string, enabled: boolean, sortOrder: number }> = {}) {
      const code = fields.code ?? `xx-test${suffix().replace(/[0-9]/g, 'q')}-1`
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

    /** A signed access token for a made-up session (no rows): for routes that only check scopes. */
    token (claims: Partial<{ sub: string, role: Role, scopes: string[], sid: string }> = {}) {
      return app.issueAccessToken({ sub: claims.sub ?? randomUUID(), role: claims.role ?? 'user', scopes: claims.scopes ?? [], sid: claims.sid ?? randomUUID() })
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
      const pair = await openSession(app.db, app.accountDeps, account, { ip: '127.0.0.1', userAgent: 'tap' })
      return { account, accessToken: pair.accessToken, refreshToken: pair.refreshToken, headers: bearer(pair.accessToken), scopes: scopesFor(account.role) }
    }
  }
}

export function bearer (token: string) {
  return { authorization: `Bearer ${token}` }
}
