// Token revocation endpoints as the providers document them, on one local node:http server (the token and
// authorize endpoints stay with oauth2-mock-server, test/helpers/storage-oauth.ts). Each keeps the tokens
// it has revoked (and those a test says expired), records every call, and can answer one call otherwise.
//
// /2/auth/token/revoke, Dropbox (https://www.dropbox.com/developers/documentation/http/documentation#auth-token-revoke):
//   POST with `Authorization: Bearer <access token>`; "This endpoint does not accept any arguments" (an RPC
//   endpoint: a body, if any, is JSON, and with no arguments there is none, or `null`). 200 with `null` when
//   revoked; 401 with an AuthError (`{ error_summary, error: { ".tag" } }`: `invalid_access_token` for a
//   token revoked or unknown, `expired_access_token` for an expired one). A body of another content type is
//   refused with Dropbox's 400 text ("Bad HTTP "Content-Type" header"): what it answered our form body.
// /oauth2/revoke, Google (https://developers.google.com/identity/protocols/oauth2/web-server#tokenrevoke), RFC 7009:
//   POST, `application/x-www-form-urlencoded` with `token`; 200 when revoked; "For error conditions, an HTTP
//   status code 400 is returned along with an error code": `invalid_token` for a token revoked or expired.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

type Test = { teardown (fn: () => unknown): void }

export interface RevocationCall {
  path: string
  method: string
  authorization: string | undefined
  contentType: string | undefined
  body: string
  status?: number
}

export async function startRevocationStandIn (t: Test) {
  const calls: RevocationCall[] = []
  const revoked = new Set<string>()
  const expired = new Set<string>()
  const once: Array<{ status: number, body: unknown }> = []

  const send = (res: ServerResponse, call: RevocationCall, status: number, body: unknown) => {
    call.status = status
    const text = typeof body === 'string' ? body : JSON.stringify(body)
    res.writeHead(status, { 'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json' })
    res.end(text)
  }
  const authError = (tag: string) => ({ error_summary: `${tag}/`, error: { '.tag': tag } })

  function dropbox (res: ServerResponse, call: RevocationCall) {
    const type = call.contentType?.split(';')[0]?.trim()
    if (call.body !== '' && type !== 'application/json') {
      return send(res, call, 400, `Error in call to API function "auth/token/revoke": Bad HTTP "Content-Type" header: "${call.contentType ?? ''}".  Expecting one of "application/json", "application/json; charset=utf-8", "text/plain; charset=dropbox-cors-hack".`)
    }
    if (call.body !== '' && call.body.trim() !== 'null') return send(res, call, 400, 'Error in call to API function "auth/token/revoke": request body: expected null')
    const token = /^Bearer (.+)$/.exec(call.authorization ?? '')?.[1]
    if (!token) return send(res, call, 400, 'Error in call to API function "auth/token/revoke": Must provide HTTP header "Authorization" or URL parameter "authorization".')
    if (revoked.has(token)) return send(res, call, 401, authError('invalid_access_token'))
    if (expired.has(token)) return send(res, call, 401, authError('expired_access_token'))
    revoked.add(token)
    return send(res, call, 200, null)
  }

  function google (res: ServerResponse, call: RevocationCall) {
    if (call.contentType?.split(';')[0]?.trim() !== 'application/x-www-form-urlencoded') return send(res, call, 400, { error: 'invalid_request', error_description: 'Bad Request' })
    const token = new URLSearchParams(call.body).get('token')
    if (!token) return send(res, call, 400, { error: 'invalid_request', error_description: 'Bad Request' })
    if (revoked.has(token) || expired.has(token)) return send(res, call, 400, { error: 'invalid_token', error_description: 'Token expired or revoked' })
    revoked.add(token)
    return send(res, call, 200, '')
  }

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const call: RevocationCall = {
        path: req.url ?? '/',
        method: req.method ?? 'GET',
        authorization: req.headers.authorization,
        contentType: req.headers['content-type'],
        body: Buffer.concat(chunks).toString('utf8')
      }
      calls.push(call)
      const planned = once.shift()
      if (planned) return send(res, call, planned.status, planned.body)
      if (call.method !== 'POST') return send(res, call, 405, 'Method Not Allowed')
      if (call.path === '/2/auth/token/revoke') return dropbox(res, call)
      if (call.path === '/oauth2/revoke') return google(res, call)
      return send(res, call, 404, 'Not Found')
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  t.teardown(() => new Promise<void>((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  }))

  return {
    url,
    dropboxUrl: `${url}/2/auth/token/revoke`,
    googleUrl: `${url}/oauth2/revoke`,
    calls,
    revoked,
    /** The token has expired (Dropbox: `expired_access_token`; Google: `invalid_token`). */
    expire (token: string) { expired.add(token) },
    /** The token was revoked elsewhere (the user unlinked the app at the provider). */
    revoke (token: string) { revoked.add(token) },
    /** The next call is answered with this status and body (a string is sent as text). */
    answerOnce (status: number, body: unknown = '') { once.push({ status, body }) },
    authError
  }
}

export type RevocationStandIn = Awaited<ReturnType<typeof startRevocationStandIn>>
