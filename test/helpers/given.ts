// Factories: arrange rows and tokens in one line each, with unique ids so tests never collide.
import { randomBytes } from 'node:crypto'
import type { FastifyInstance } from 'fastify'
import type { Role } from '../../plugins/auth.js'

const suffix = () => randomBytes(3).toString('hex')

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

    /** A signed access token, as accounts will issue them. */
    token (claims: Partial<{ sub: string, role: Role, scopes: string[] }> = {}) {
      return app.issueAccessToken({ sub: claims.sub ?? `user-${suffix()}`, role: claims.role ?? 'user', scopes: claims.scopes ?? [] })
    }
  }
}

export function bearer (token: string) {
  return { authorization: `Bearer ${token}` }
}
