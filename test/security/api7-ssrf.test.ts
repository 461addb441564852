// OWASP API7 (server-side request forgery), walked from the spec: every request field that holds a URL or a
// network address (format uri/url/ipv4/ipv6/hostname, or a name that says url, uri, redirect, callback,
// webhook...) is found, and the server is shown never to connect to it: a local listener's address is
// submitted and no connection arrives (the allow-listed Google redirect URI is checked against the list
// before anything is sent anywhere). And every redirect the API answers (302) goes to the configured
// client address, whatever the query says (no open redirect).
import { once } from 'node:events'
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { exampleBody, isProblem, operations, validRequest, type Node, type WalkedOperation } from './spec-walk.js'

const addressFormats = new Set(['uri', 'url', 'uri-reference', 'iri', 'iri-reference', 'uri-template', 'ipv4', 'ipv6', 'hostname', 'idn-hostname'])
const addressName = /ur[li]$|ur[li]s$|redirect|callback|webhook|href|link|endpoint|host$|^ip$/i

/** Request fields (body members at any depth, parameters) that hold an address. */
function addressFields (op: WalkedOperation): string[] {
  const found = new Set<string>()
  const walk = (schema: Node | undefined, at: string) => {
    if (!schema || typeof schema !== 'object') return
    if (addressFormats.has(schema.format)) found.add(at)
    for (const [key, child] of Object.entries<Node>(schema.properties ?? {})) {
      if (addressName.test(key)) found.add(`${at}/${key}`)
      walk(child, `${at}/${key}`)
    }
    if (schema.items) walk(schema.items, `${at}[]`)
    for (const key of ['oneOf', 'anyOf', 'allOf']) for (const child of schema[key] ?? []) walk(child, at)
  }
  for (const p of op.params) {
    if (addressName.test(p.name)) found.add(`/${p.in}/${p.name}`)
    walk(p.schema, `/${p.in}/${p.name}`)
  }
  for (const c of op.body?.contents ?? []) walk(c.schema, '/body')
  return [...found].sort()
}

/** Each address field, and how the test proves it is not fetched. A new one fails the test until listed. */
const handled: Record<string, string> = {
  'signInWithGoogle /body/redirectUri': 'checked against GOOGLE_REDIRECT_URIS before the code goes to Google\'s token endpoint (config)',
  'hostHandshake /body/ip': 'stored as the host\'s address; the handshake connects to nothing',
  'listAuditEvents /query/ip': 'a filter compared with the addresses stored in the audit trail',
  'createApp /body/iconUrl': 'stored and shown to clients (https only); the server never fetches it',
  'updateApp /body/iconUrl': 'as createApp'
}

/** A TCP listener that counts connections (and answers nothing useful). */
async function listener (t: { teardown (fn: () => unknown): void }) {
  const sockets = new Set<Socket>()
  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.on('error', () => {})
    socket.end('HTTP/1.1 500 x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n')
  })
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  t.teardown(() => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(resolve) }))
  const connections = () => sockets.size
  const { port } = server.address() as AddressInfo
  return { port, url: `http://127.0.0.1:${port}/ssrf`, connections }
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 300))

// One app for the file; listeners that count who connects to them.
const clientRedirect = 'https://app.fractal.test/storage'
const trap = await listener(t)
const tokenEndpoint = await listener(t)
const agent = await listener(t)
const bootstrapSecret = 'ssrf-bootstrap-secret-0123456789'
const app = await build(t, {
  RATE_LIMIT_ENABLED: 'false',
  GOOGLE_CLIENT_ID: 'ssrf-client.apps.googleusercontent.com',
  GOOGLE_CLIENT_SECRET: 'ssrf-client-secret',
  GOOGLE_TOKEN_URL: tokenEndpoint.url,
  GOOGLE_REDIRECT_URIS: 'https://app.fractal.test/auth/google/callback',
  HOST_BOOTSTRAP_SECRET: bootstrapSecret,
  HOST_AGENT_SECRET: 'ssrf-agent-secret-0123456789',
  HOST_AGENT_SCHEME: 'http',
  HOST_AGENT_PORT: String(agent.port),
  STORAGE_CLIENT_REDIRECT: clientRedirect
})

t.test('security › SSRF › every request field holding an address is known, and none is ever connected to', async (t) => {
  const fields = operations.flatMap((op) => addressFields(op).map((f) => `${op.operationId} ${f}`))
  t.same(fields.filter((f) => !(f in handled)), [], 'every address field has a check below (add one to `handled`)')
  t.same(Object.keys(handled).filter((f) => !fields.includes(f)), [], 'no stale entry')

  const send = (operationId: string, body: Node) => {
    const op = operations.find((o) => o.operationId === operationId)!
    return app.inject({ ...validRequest(op), payload: JSON.stringify({ ...JSON.parse(exampleBody(op)!.payload), ...body }) })
  }

  // signInWithGoogle: an attacker's redirect URI (ours, a metadata address, a file URL) is refused before Google is asked.
  for (const redirectUri of [trap.url, 'http://169.254.169.254/latest/meta-data/', 'http://[::1]:1/', 'https://app.fractal.test.evil.example/auth/google/callback', 'https://app.fractal.test/auth/google/callback/../../x']) {
    const res = await send('signInWithGoogle', { code: 'an-authorization-code', redirectUri, idToken: undefined })
    t.equal(res.statusCode, 401, `redirectUri ${redirectUri} is refused`)
    t.ok(isProblem(res))
  }
  await settle()
  t.equal(trap.connections(), 0, 'nothing connected to the submitted address')
  t.equal(tokenEndpoint.connections(), 0, 'nor to Google with it')
  // Control: the listed redirect URI does reach the (configured) token endpoint, so the listeners do see connections.
  await send('signInWithGoogle', { code: 'an-authorization-code', redirectUri: 'https://app.fractal.test/auth/google/callback', idToken: undefined })
  t.ok(tokenEndpoint.connections() > 0, 'the configured token endpoint is called for a listed redirect URI')

  // hostHandshake: the host's declared address is stored, not called (the agent port points at a listener).
  const { region } = await given(app).offer()
  const handshake = await send('hostHandshake', { ip: '127.0.0.1', region, bootstrapSecret, instanceId: 'i-0a1b2c3d4e5f60718' })
  t.equal(handshake.statusCode, 201, 'the host is registered')
  await settle()
  t.equal(agent.connections(), 0, 'nothing connected to the declared address')

  // listAuditEvents: the ip filter is compared, not called.
  const admin = await given(app).signedIn({ role: 'admin' })
  for (const ip of ['127.0.0.1', trap.url, `127.0.0.1:${trap.port}`]) {
    const res = await app.inject({ method: 'GET', url: `/v1/admin/audit?ip=${encodeURIComponent(ip)}`, headers: admin.headers })
    t.ok(res.statusCode === 200 || res.statusCode === 400, `ip=${ip}: ${res.statusCode}`)
  }
  await settle()
  t.equal(trap.connections(), 0, 'nothing connected to the filter value')

  // createApp, updateApp: an icon URL is stored and shown, never fetched.
  const operator = await given(app).signedIn({ role: 'developer' })
  const icon = `https://127.0.0.1:${trap.port}/icon.svg`
  const created = await app.inject({ method: 'POST', url: '/v1/admin/apps', headers: operator.headers, payload: { id: 'ssrf-icon', name: 'Icon', description: 'An app.', iconUrl: icon, category: 'media' } })
  t.equal(created.statusCode, 201, 'the app is created with the icon URL')
  const updated = await app.inject({ method: 'PATCH', url: '/v1/admin/apps/ssrf-icon', headers: operator.headers, payload: { iconUrl: `${icon}?v=2` } })
  t.equal(updated.statusCode, 200)
  await settle()
  t.equal(trap.connections(), 0, 'nothing connected to the icon URL')
})

t.test('security › open redirect › every redirect the API answers goes to the configured client address, whatever the query says', async (t) => {
  const redirecting = operations.filter((op) => [...op.statuses].some((s) => /^30[1278]$/.test(s)))
  t.same(redirecting.map((op) => op.operationId).sort(), ['authorizeStorageConnection', 'storageCallback'], 'the operations that redirect')
  const attacks = ['https://evil.example/', '//evil.example', '/\\evil.example', 'javascript:alert(1)', 'https:evil.example', '%2F%2Fevil.example']
  for (const op of redirecting) {
    const strings = op.params.filter((p) => p.in === 'query' && p.schema.type === 'string').map((p) => p.name)
    for (const attack of attacks) {
      const query = new URLSearchParams(Object.fromEntries(strings.map((name) => [name, attack])))
      for (const only of [...strings.map((name) => new URLSearchParams({ [name]: attack })), query]) {
        const res = await app.inject({ method: op.method as 'GET', url: `${op.path}?${only}` })
        if (res.statusCode >= 300 && res.statusCode < 400) {
          t.ok(String(res.headers.location).startsWith(`${clientRedirect}?`), `${op.operationId}?${only} → ${res.headers.location}`)
        } else {
          t.equal(res.statusCode, 400, `${op.operationId}?${only} is refused`)
        }
      }
    }
  }
})
