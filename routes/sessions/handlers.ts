import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import { signInWithGoogle } from '../../services/accounts/google.js'
import { presentTokenPair } from '../accounts/present.js'
import { contextOf, principalOf } from '../request-context.js'

export const handlers = {
  async signIn (request) {
    return presentTokenPair(await accounts.signIn(this.db, this.accountDeps, request.body, contextOf(request)))
  },

  async signInWithGoogle (request) {
    return presentTokenPair(await signInWithGoogle(this.db, this.accountDeps, this.google, request.body, contextOf(request)))
  },

  async refreshSession (request) {
    return presentTokenPair(await accounts.refreshSession(this.db, this.accountDeps, request.body.refreshToken, contextOf(request)))
  },

  async signOut (request, reply) {
    await accounts.signOut(this.db, this.accountDeps, principalOf(request), contextOf(request))
    return reply.code(204).send()
  }
} satisfies Handlers<'sessions'>
