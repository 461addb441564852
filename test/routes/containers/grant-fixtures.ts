// Shared by the connection-grant tests (issue 22): an app with a moved clock, a held container on a known host.
import { build } from '../../helpers/build.js'
import { TestClock } from '../../helpers/clock.js'
import { given } from '../../helpers/given.js'

export type App = Awaited<ReturnType<typeof build>>

export async function setup (t: Parameters<typeof build>[0], overrides: Record<string, string> = {}) {
  const clock = new TestClock()
  const app = await build(t, overrides, { clock })
  const held = await given(app).assignedContainer()
  // The host the container runs on (the warm container's address).
  const host = await given(app).host(held.offer.region)
  await app.db.updateTable('host').set({ ip: held.warm.host_ip }).where('id', '=', host.id).execute()
  return { app, clock, host, ...held }
}

export const grant = (app: App, id: string, headers: Record<string, string>, payload?: object) =>
  app.inject({ method: 'POST', url: `/v1/containers/${id}/grants`, headers, ...(payload ? { payload } : {}) })
export const introspect = (app: App, host: { id: string, secret: string }, token: string) =>
  app.inject({ method: 'POST', url: `/v1/hosts/${host.id}/grants/introspect`, headers: { 'x-host-secret': host.secret }, payload: { token } })
export const view = (app: App, id: string, headers: Record<string, string>, token?: string) =>
  app.inject({ method: 'GET', url: `/v1/containers/${id}`, headers: { ...headers, ...(token ? { 'x-connection-grant': token } : {}) } })
