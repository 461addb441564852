// The partner subset of the contract: /partner/openapi.json (and .yaml) and its Swagger UI at /partner/docs.
import { execFile } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'
import { build, fileApp } from '../../helpers/build.js'
import { dereference } from '../../../openapi/spec.js'

const run = promisify(execFile)
const root = new URL('../../..', import.meta.url).pathname
const methods = ['get', 'put', 'post', 'patch', 'delete']

const operationIds = (doc: Record<string, any>) => Object.values<Record<string, any>>(doc.paths)
  .flatMap((item) => methods.filter((m) => item[m]).map((m) => item[m].operationId as string)).sort()

t.test('partner docs › /partner/openapi.json holds exactly the partner operations and what they reference', async (t) => {
  const app = await build(t, { PUBLIC_URL: 'https://api.fractal.co' })
  const res = await app.inject({ method: 'GET', url: '/partner/openapi.json' })
  t.equal(res.statusCode, 200)
  t.match(res.headers['content-type'], /application\/json/)
  const doc = res.json()
  const full = (await app.inject({ method: 'GET', url: '/openapi.json' })).json()
  const partnerOps = Object.values<Record<string, any>>(full.paths)
    .flatMap((item) => methods.filter((m) => item[m]?.tags?.includes('partner')).map((m) => item[m].operationId as string)).sort()

  t.same(operationIds(doc), ['getPartnerUsage', 'listPartnerContainers', 'listPartnerUsers'])
  t.same(operationIds(doc), partnerOps, 'every partner operation, nothing else')
  t.notOk(Object.keys(doc.paths).some((p) => p.startsWith('/v1/admin')), 'no admin path')
  t.notMatch(res.body, /createPartnerKey|revokePartnerKey|listUsers|bearer/, 'no admin operation or user scheme anywhere')
  t.same(Object.keys(doc.components.securitySchemes), ['partnerKey'])
  t.match(doc.components.securitySchemes.partnerKey, { type: 'apiKey', in: 'header', name: 'X-Api-Key' })
  t.same(doc.tags.map((tag: { name: string }) => tag.name), ['partner'])
  t.same(doc.servers, [{ url: 'https://api.fractal.co', description: 'This server' }])
  t.equal(doc.info.title, 'Fractal partner API')

  // Every $ref resolves inside the document (the one resolver refuses one that does not), and every component is used.
  await t.resolves(dereference(doc), 'every $ref resolves')
  const refs = new Set<string>()
  const walk = (node: unknown): void => {
    if (Array.isArray(node)) return node.forEach(walk)
    if (node && typeof node === 'object') for (const [k, v] of Object.entries(node)) k === '$ref' ? refs.add(v as string) : walk(v)
  }
  walk(doc)
  for (const [kind, entries] of Object.entries<Record<string, unknown>>(doc.components)) {
    if (kind === 'securitySchemes') continue
    for (const name of Object.keys(entries)) t.ok(refs.has(`#/components/${kind}/${name}`), `${kind}/${name} is referenced`)
  }
  t.notOk(doc.components.schemas.AdminUser, 'no unrelated schema')

  const again = await app.inject({ method: 'GET', url: '/partner/openapi.json', headers: { 'if-none-match': res.headers.etag as string } })
  t.equal(again.statusCode, 304)
  const yaml = await app.inject({ method: 'GET', url: '/partner/openapi.yaml' })
  t.match(yaml.body, /^openapi: 3\.1\.0/m)
  t.notMatch(yaml.body, /\/v1\/admin/)
})

t.test('partner docs › the partner document lints clean (redocly)', async (t) => {
  const app = await fileApp()
  const body = (await app.inject({ method: 'GET', url: '/partner/openapi.json' })).body
  const dir = await mkdtemp(join(tmpdir(), 'fractal-partner-doc-'))
  t.teardown(() => rm(dir, { recursive: true, force: true }))
  await writeFile(join(dir, 'partner.json'), body)
  const { stdout, stderr } = await run(join(root, 'node_modules/.bin/redocly'), ['lint', join(dir, 'partner.json'), '--format=stylish'], { cwd: root, env: { ...process.env, REDOCLY_TELEMETRY: 'off' } })
    .catch((err) => ({ stdout: `${err.stdout}`, stderr: `${err.stderr}` }))
  t.notMatch(stdout + stderr, /\d+ errors?\b/, stdout)
})

t.test('partner docs › /partner/docs is Swagger UI on the partner document, and /docs still on the whole one', async (t) => {
  const app = await fileApp()
  const ui = await app.inject({ method: 'GET', url: '/partner/docs/' })
  t.equal(ui.statusCode, 200)
  t.match(ui.body, /swagger-ui/i)
  t.match(ui.headers['content-security-policy'], /script-src 'self'/)
  const init = await app.inject({ method: 'GET', url: '/partner/docs/static/swagger-initializer.js' })
  t.match(init.body, /persistAuthorization":\s*true/, 'the API key survives a reload')
  const asset = await app.inject({ method: 'GET', url: '/partner/docs/static/swagger-ui-bundle.js' })
  t.equal(asset.statusCode, 200)
  const served = await app.inject({ method: 'GET', url: '/partner/docs/json' })
  t.same(operationIds(served.json()), ['getPartnerUsage', 'listPartnerContainers', 'listPartnerUsers'])

  const whole = await app.inject({ method: 'GET', url: '/docs/json' })
  t.ok(operationIds(whole.json()).includes('createPartnerKey'), '/docs shows everything')
  t.equal((await app.inject({ method: 'GET', url: '/docs/' })).statusCode, 200)
})
