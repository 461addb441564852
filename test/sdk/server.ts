// The SDK's tests talk HTTP to a listening app, as a client app would, never through inject.
import { createSign } from 'node:crypto'
import type { AddressInfo } from 'node:net'
import { buildApp } from '../../app.js'
import { type Overrides, testConfig, testKeys } from '../helpers/build.js'

type Test = Parameters<typeof testConfig>[0]

/** A whole app listening on a free port; `calls` counts the requests that reached it (`POST /v1/sessions/refresh`). */
export async function listening (t: Test, overrides: Overrides = {}) {
  const config = await testConfig(t, overrides)
  const app = await buildApp(config, { logger: false })
  t.teardown(() => app.close())
  const calls: string[] = []
  app.addHook('onRequest', async (request) => { calls.push(`${request.method} ${request.routeOptions.url ?? request.url}`) })
  await app.listen({ port: 0, host: '127.0.0.1' })
  const { port } = app.server.address() as AddressInfo
  return { app, baseUrl: `http://127.0.0.1:${port}`, calls, count: (call: string) => calls.filter((c) => c === call).length }
}

/** An access token of a real session that expired a minute ago, signed with the app's key. */
export function expiredAccessToken (app: Awaited<ReturnType<typeof listening>>['app'], accessToken: string): string {
  const claims = app.jwt.decode<Record<string, unknown>>(accessToken)!
  const now = Math.floor(Date.now() / 1000)
  const b64 = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url')
  const input = `${b64({ alg: 'ES256', typ: 'JWT' })}.${b64({ ...claims, iat: now - 3600, exp: now - 60 })}`
  const signature = createSign('SHA256').update(input).sign({ key: testKeys.privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url')
  return `${input}.${signature}`
}
