import type { Handlers } from '../../openapi/handler-types.js'
import * as accounts from '../../services/accounts/accounts.service.js'
import { signInWithGoogle } from '../../services/accounts/google.js'
import { presentTokenPair } from '../accounts/present.js'
import { sessionOf } from '../request-context.js'

export const handlers = {
  async signIn (request) {
    return presentTokenPair(await accounts.signIn(this.db, this.accountDeps, request.body))
  },

  async signInWithGoogle (request) {
    return presentTokenPair(await signInWithGoogle(this.db, this.accountDeps, this.google, request.body))
  },

  async refreshSession (request) {
    return presentTokenPair(await accounts.refreshSession(this.db, this.accountDeps, request.body.refreshToken))
  },

  async signOut (request, reply) {
    await accounts.signOut(this.db, this.accountDeps, sessionOf(request))
    return reply.code(204).send()
  }
} satisfies Handlers<'sessions'>
