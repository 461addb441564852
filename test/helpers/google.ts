// A real OpenID provider (oauth2-mock-server) on a free local port, playing Google for sign-in tests.
import { createHash, randomBytes } from 'node:crypto'
import { OAuth2Issuer, OAuth2Server, type MutableToken } from 'oauth2-mock-server'
import type { Overrides } from './build.js'

type Test = { teardown (fn: () => unknown): void }

export const googleClientId = 'google-client-id'
export const allowedRedirectUris = ['https://app.fractal.test/callback', 'http://127.0.0.1:53682/callback'] as const

export interface GoogleClaims {
  sub?: string
  email?: string
  email_verified?: boolean | string
  name?: string
  aud?: string | string[]
  iss?: string
  exp?: number
  [claim: string]: unknown
}

export interface FakeGoogle {
  server: OAuth2Server
  issuer: string
  /** The GOOGLE_* variables that point the app at this provider. */
  env: Overrides
  /** Form bodies the token endpoint received, in order. */
  tokenRequests: Array<Record<string, string>>
  /** A fresh Google identity: a unique subject and address, verified. */
  identity (claims?: GoogleClaims): Required<Pick<GoogleClaims, 'sub' | 'email' | 'email_verified' | 'name'>> & GoogleClaims
  /** An ID token signed by this provider's key, for our client unless `claims` says otherwise. */
  idToken (claims: GoogleClaims): Promise<string>
  /** An ID token with the same `kid` as the provider's key but signed by another key. */
  forgedIdToken (claims: GoogleClaims): Promise<string>
  /** The ID token the token endpoint returns next carries these claims (the access token is left alone). */
  nextIdToken (claims: GoogleClaims): void
  /** Runs the authorize step with a PKCE S256 challenge: the code and the verifier to redeem it with. */
  authorizeWithPkce (redirectUri: string): Promise<{ code: string, codeVerifier: string }>
}

const suffix = () => randomBytes(4).toString('hex')

export async function startGoogle (t: Test): Promise<FakeGoogle> {
  const server = new OAuth2Server()
  const key = await server.issuer.keys.generate('RS256')
  await server.start(0, '127.0.0.1')
  t.teardown(() => server.stop())
  const issuer = server.issuer.url!

  const tokenRequests: Array<Record<string, string>> = []
  server.service.on('beforeResponse', (_response, req) => { tokenRequests.push({ ...req.body }) })

  const apply = (claims: GoogleClaims) => (_header: unknown, payload: Record<string, unknown>) => {
    Object.assign(payload, { aud: googleClientId }, claims)
  }

  return {
    server,
    issuer,
    env: {
      GOOGLE_CLIENT_ID: googleClientId,
      GOOGLE_CLIENT_SECRET: 's',
      GOOGLE_ISSUER: issuer,
      GOOGLE_TOKEN_URL: `${issuer}/token`,
      GOOGLE_JWKS_URL: `${issuer}/jwks`,
      GOOGLE_REDIRECT_URIS: allowedRedirectUris.join(',')
    },
    tokenRequests,
    identity (claims = {}) {
      const id = suffix()
      return { sub: `g-${id}`, email: `google-${id}@gmail.test`, email_verified: true, name: `Google User ${id}`, ...claims }
    },
    idToken (claims) {
      return server.issuer.buildToken({ scopesOrTransform: apply(claims) })
    },
    async forgedIdToken (claims) {
      const other = new OAuth2Issuer()
      other.url = issuer
      await other.keys.generate('RS256', { kid: key.kid })
      return other.buildToken({ scopesOrTransform: apply(claims) })
    },
    nextIdToken (claims) {
      // The token endpoint signs the access token first, then the ID token: only the latter has no `scope`.
      const customize = (token: MutableToken) => {
        if ('scope' in token.payload) return
        Object.assign(token.payload, claims)
        server.service.off('beforeTokenSigning', customize)
      }
      server.service.on('beforeTokenSigning', customize)
    },
    async authorizeWithPkce (redirectUri) {
      const codeVerifier = randomBytes(32).toString('base64url')
      const challenge = createHash('sha256').update(codeVerifier).digest('base64url')
      const url = new URL(`${issuer}/authorize`)
      url.search = new URLSearchParams({ response_type: 'code', client_id: googleClientId, redirect_uri: redirectUri, scope: 'openid email', code_challenge: challenge, code_challenge_method: 'S256', state: suffix() }).toString()
      const res = await fetch(url, { redirect: 'manual' })
      const code = new URL(res.headers.get('location')!).searchParams.get('code')
      if (!code) throw new Error(`the mock provider gave no code (${res.status})`)
      return { code, codeVerifier }
    }
  }
}
