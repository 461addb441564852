import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import { presentAdminUser } from '../accounts/present.js'
import { principalOf } from '../request-context.js'

export const handlers = {
  async listUsers (request) {
    const { limit = 20, cursor, q, role } = request.query
    const page = await accounts.listUsers(this.db, { limit, cursor, q, role })
    return { items: page.items.map(presentAdminUser), nextCursor: page.nextCursor }
  },

  async updateUser (request) {
    const account = await accounts.updateUser(this.db, this.accountDeps, principalOf(request), request.params.userId, request.body)
    return presentAdminUser(account)
  }
} satisfies Handlers<'users'>
