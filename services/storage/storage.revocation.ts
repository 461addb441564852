// Revoking a storage provider's grant, the way each provider documents it. A connection is forgotten only
// when the provider says the grant is revoked, or that it was already (issue 19: Dropbox's call used to be
// sent as Google's, which Dropbox refuses with a 400, and any 4xx counted as revoked).

/**
 * How a provider revokes. `oauth2`: RFC 7009 (Google's https://oauth2.googleapis.com/revoke): the token as a
 * form field; 200 when revoked; Google answers 400 `invalid_token` for a token already revoked or expired.
 * `dropbox`: https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke: POST,
 * the access token as the bearer, no arguments (no body); 200 when revoked, which also disables the refresh
 * token and every access token of the grant; 401 with an AuthError (`invalid_access_token`: revoked already;
 * `expired_access_token`: the grant may still live, so a fresh access token is fetched and sent instead).
 */
export type RevocationStyle = 'oauth2' | 'dropbox'
export const revocationStyles: readonly RevocationStyle[] = ['oauth2', 'dropbox']

export interface GrantTokens { access: string, refresh: string | null }

/** A fresh access token from the refresh token, or `invalid_grant` (the grant is revoked already). */
export type Refresh = (refreshToken: string) => Promise<{ accessToken: string } | 'invalid_grant'>

export type Revoked = { ok: true, outcome: 'revoked' | 'already revoked' | 'expired' } | { ok: false, why: string }

interface Answer { status: number, body: Record<string, any> | null }

async function send (url: string, init: RequestInit, timeoutMs: number): Promise<Answer | { failed: string }> {
  let res: Response
  try {
    res = await fetch(url, { ...init, method: 'POST', signal: AbortSignal.timeout(timeoutMs) })
  } catch (err) {
    return { failed: (err as Error).name === 'TimeoutError' ? 'the revocation timed out' : 'unreachable' }
  }
  const text = await res.text()
  let body: Record<string, any> | null = null
  try {
    const parsed: unknown = JSON.parse(text)
    if (parsed !== null && typeof parsed === 'object') body = parsed as Record<string, any>
  } catch { /* not JSON: only the status speaks */ }
  return { status: res.status, body }
}

const refused = (answer: Answer, detail: unknown) =>
  `revocation answered ${answer.status}${typeof detail === 'string' && /^[\w./-]{1,80}$/.test(detail) ? ` (${detail})` : ''}`

async function revokeOAuth2 (url: string, tokens: GrantTokens, timeoutMs: number): Promise<Revoked> {
  // The refresh token when there is one: revoking it ends the grant (RFC 7009 §2.1).
  const answer = await send(url, {
    headers: { 'content-type': 'application/x-www-form-urlencoded', authorization: `Bearer ${tokens.access}` },
    body: new URLSearchParams({ token: tokens.refresh ?? tokens.access })
  }, timeoutMs)
  if ('failed' in answer) return { ok: false, why: answer.failed }
  if (answer.status === 200) return { ok: true, outcome: 'revoked' }
  if (answer.status === 400 && answer.body?.error === 'invalid_token') return { ok: true, outcome: 'already revoked' }
  return { ok: false, why: refused(answer, answer.body?.error) }
}

async function revokeDropbox (url: string, tokens: GrantTokens, refresh: Refresh, timeoutMs: number): Promise<Revoked> {
  let access = tokens.access
  for (let refreshed = false; ; refreshed = true) {
    // "This endpoint does not accept any arguments": no body, so no Content-Type either.
    const answer = await send(url, { headers: { authorization: `Bearer ${access}` } }, timeoutMs)
    if ('failed' in answer) return { ok: false, why: answer.failed }
    if (answer.status === 200) return { ok: true, outcome: 'revoked' }
    const tag: unknown = answer.body?.error?.['.tag'] ?? (typeof answer.body?.error_summary === 'string' ? answer.body.error_summary.split('/')[0] : undefined)
    if (answer.status === 401 && tag === 'invalid_access_token') return { ok: true, outcome: 'already revoked' }
    if (answer.status !== 401 || tag !== 'expired_access_token' || refreshed) return { ok: false, why: refused(answer, tag) }
    // An expired access token revokes nothing; without a refresh token nothing can renew it either.
    if (!tokens.refresh) return { ok: true, outcome: 'expired' }
    const fresh = await refresh(tokens.refresh)
    if (fresh === 'invalid_grant') return { ok: true, outcome: 'already revoked' }
    access = fresh.accessToken
  }
}

/** Revokes the grant behind `tokens` at the provider's `revokeUrl`, in the provider's way. */
export async function revokeGrant (provider: { revokeUrl: string, revocation?: RevocationStyle | undefined }, tokens: GrantTokens, options: { refresh: Refresh, timeoutMs: number }): Promise<Revoked> {
  switch (provider.revocation ?? 'oauth2') {
    case 'oauth2': return revokeOAuth2(provider.revokeUrl, tokens, options.timeoutMs)
    case 'dropbox': return revokeDropbox(provider.revokeUrl, tokens, options.refresh, options.timeoutMs)
  }
}
