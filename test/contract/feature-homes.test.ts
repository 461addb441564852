// Issue 20, item 2 (one home per feature): a feature's dependencies stay in its own encapsulated context,
// where its operations run; the root instance, which every feature sees, gains only the contracts features
// declare for each other (through fastify-plugin). Compared with an app of the infrastructure alone, so a
// feature that decorates the root with a dependency of its own fails here, whichever feature it is.
import t from 'tap'
import type { FastifyInstance } from 'fastify'
import { buildApp } from '../../app.js'
import { testConfig } from '../helpers/build.js'

/** What features expose on the root instance, and who uses it. */
const contracts: Record<string, string> = {
  accountDeletionSteps: 'accounts: billing and containers add what deleting an account removes',
  describeTaskDefinition: 'containers: whether the cloud has a task definition (the catalog validates with it)',
  entitlement: 'billing: a user\'s entitlement',
  entitlementTerms: 'billing: the terms the containers\' assignment decides with',
  grantDeps: 'containers: how connection grants are signed and verified (the hosts feature introspects them)',
  storageTokens: 'storage: the tokens the containers\' host-agent job mounts',
  verifyContainer: 'containers: the caller the rate limiter keys `key: container` operations by'
}
/** Request decorations features expose. */
const requestContracts: Record<string, string> = {
  container: 'containers: the caller containerSecret accepted (the logs feature\'s uploads take it too)'
}

/**
 * The names decorated on the root's requests: Fastify keeps its Request under a symbol of its own, functions on
 * its prototype and values (`decorateRequest('container', null)`) in its `props`.
 */
function requestDecorations (app: FastifyInstance): string[] {
  const kRequest = Object.getOwnPropertySymbols(app).find((s) => s.description === 'fastify.Request')
  if (!kRequest) throw new Error('Fastify no longer keeps its Request under the symbol fastify.Request')
  const Request = (app as unknown as Record<symbol, { prototype: object, props: Array<{ key: string | symbol }> }>)[kRequest]!
  return [...Object.getOwnPropertyNames(Request.prototype), ...Request.props.map((p) => p.key).filter((key) => typeof key === 'string')]
}

t.test('features › the root instance gains only the contracts features declare for each other', async (t) => {
  const infrastructure = await buildApp(await testConfig(t), { logger: false, features: [] })
  t.teardown(() => infrastructure.close())
  const app = await buildApp(await testConfig(t), { logger: false })
  t.teardown(() => app.close())

  const added = Object.getOwnPropertyNames(app).filter((name) => !Object.hasOwn(infrastructure, name)).sort()
  t.same(added, Object.keys(contracts).sort(), 'instance decorations beyond the infrastructure\'s')
  const known = new Set(requestDecorations(infrastructure))
  t.same(requestDecorations(app).filter((name) => !known.has(name)).sort(), Object.keys(requestContracts).sort(), 'request decorations beyond the infrastructure\'s')

  // The dependency bags of before (each on the root for every feature to see) are each in their feature's context.
  for (const name of ['accountDeps', 'google', 'newsletterDeps', 'billingDeps', 'storageDeps', 'containerDeps', 'cloudProvider', 'clusterDeps', 'rollDeps', 'heartbeats', 'logDeps']) {
    t.notOk(app.hasDecorator(name), `${name} is not on the root`)
  }
  t.notOk(app.hasRequestDecorator('hostSecret'), 'the host agent\'s secret is decorated on the hosts feature\'s requests only')
})
