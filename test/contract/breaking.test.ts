// The contract guard: no breaking change against the last released document unless the major version moves.
import { readFileSync } from 'node:fs'
import t from 'tap'
import { parse } from 'yaml'
import { acceptedBreaks, breakingChanges, checkAgainstRelease, currentPath, releasedPath } from '../../openapi/breaking.js'

// Parsed once (the YAML parser was half of this file's CPU); each test changes its own copy.
const currentDocument = parse(readFileSync(currentPath, 'utf8')) as Record<string, any>
const releasedDocument = parse(readFileSync(releasedPath, 'utf8')) as Record<string, any>
const current = () => structuredClone(currentDocument)
const released = () => structuredClone(releasedDocument)

t.test('spec › breaking › the spec has no breaking change against openapi/released/v1.yaml (or bumps the major)', async (t) => {
  const { changes, allowed } = await checkAgainstRelease(released(), current())
  t.ok(allowed, changes.join('\n'))
})

t.test('spec › breaking › every accepted break still happens and is in the changelog', async (t) => {
  const changes = await breakingChanges(released(), current())
  const changelog = readFileSync(new URL('../../openapi/CHANGELOG.md', import.meta.url), 'utf8')
  const unreleased = changelog.slice(changelog.indexOf('## Unreleased'), changelog.indexOf('\n## ', changelog.indexOf('## Unreleased') + 1))
  for (const change of Object.keys(acceptedBreaks)) {
    t.ok(changes.includes(change), `${change}: still a change (remove it from acceptedBreaks otherwise)`)
    const operationId = /\((\w+)\)/.exec(change)?.[1]
    t.ok(operationId && unreleased.includes(`\`${operationId}\``), `${change}: CHANGELOG.md's Unreleased section names ${operationId}`)
  }
  const after = current()
  after.paths['/v1/regions'].get.security = [{ bearer: [] }]
  t.notOk((await checkAgainstRelease(current(), after)).allowed, 'a break not in the list is still refused')
})

t.test('spec › breaking › an unchanged document has none', async (t) => {
  t.same(await breakingChanges(current(), current()), [])
})

t.test('spec › breaking › each kind of breaking change is caught, and allowed only with a new major version', async (t) => {
  const cases: Array<[string, (d: Record<string, any>) => void, RegExp]> = [
    ['an operation removed', (d) => { delete d.paths['/v1/apps/{appId}'].get }, /GET \/v1\/apps\/\{appId\} \(getApp\): removed/],
    ['an operationId renamed', (d) => { d.paths['/v1/regions'].get.operationId = 'getRegions' }, /operationId is now getRegions/],
    ['a success answer removed', (d) => { const r = d.paths['/v1/users/me'].get.responses; r['203'] = r['200']; delete r['200'] }, /getMe\): answer 200 removed/],
    ['a new required body property', (d) => {
      const schema = d.components.schemas.SignUpRequest
      schema.properties.company = { type: 'string' }
      schema.required = [...schema.required, 'company']
    }, /signUp\) body: property company is now required/],
    ['a new required query parameter', (d) => { d.paths['/v1/apps'].get.parameters.push({ name: 'platform', in: 'query', required: true, schema: { type: 'string' } }) }, /parameter query:platform is new and required/],
    ['a tighter limit on an input', (d) => { d.components.parameters.Limit.schema.maximum = 10 }, /parameter query:limit: maximum lowered to 10/],
    ['a response property removed', (d) => { delete d.components.schemas.Region.properties.name }, /listRegions\) 200.*property name (removed|is no longer always there)/],
    ['a public read now authenticated', (d) => { d.paths['/v1/regions'].get.security = [{ bearer: [] }] }, /listRegions\): now needs authentication/],
    ['a scope added', (d) => { d.paths['/v1/users/me'].get.security = [{ bearer: ['account', 'admin'] }] }, /getMe\): now needs scope admin/]
  ]
  for (const [what, change, expected] of cases) {
    const after = current()
    change(after)
    const found = await breakingChanges(current(), after)
    t.match(found.join('\n'), expected, what)
    t.notOk((await checkAgainstRelease(current(), after)).allowed, `${what}: refused at the same major`)
    after.info.version = '2.0.0'
    t.ok((await checkAgainstRelease(current(), after)).allowed, `${what}: allowed with 2.0.0`)
  }
})

t.test('spec › breaking › additions are not breaking: a new operation, an optional parameter, a new response property', async (t) => {
  const after = current()
  after.paths['/v1/new-thing'] = { get: { operationId: 'getNewThing', tags: ['system'], responses: { 200: { description: 'ok' } } } }
  after.paths['/v1/apps'].get.parameters.push({ name: 'platform', in: 'query', schema: { type: 'string' } })
  after.components.schemas.Region.properties.flag = { type: 'string' }
  t.same(await breakingChanges(current(), after), [])
})
