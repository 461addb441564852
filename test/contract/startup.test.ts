// Start-up refuses a spec and handlers that disagree, naming the operation.
import t from 'tap'
import type { FastifyInstance, FastifyPluginAsync } from 'fastify'
import catalogRoutes from '../../routes/catalog/index.js'
import systemRoutes from '../../routes/system/index.js'
import { buildApp, features } from '../../app.js'
import { handlers as catalogHandlers } from '../../routes/catalog/handlers.js'
import { testConfig } from '../helpers/build.js'

async function start (t: Parameters<typeof testConfig>[0], features: Array<FastifyPluginAsync | ((app: FastifyInstance) => Promise<void>)>) {
  const app = await buildApp(await testConfig(t), { logger: false, features: features as FastifyPluginAsync[] })
  t.teardown(() => app.close())
  return app.ready()
}

t.test('start-up › fails naming the operations whose tag no feature plugin registered', async (t) => {
  await t.rejects(start(t, [systemRoutes]), /operations .*getApp, .*listRegions, .*updateRegion.* have no handler: no feature plugin registered their tags/)
})

t.test('start-up › fails naming an operation without a handler', async (t) => {
  const { getApp, ...partial } = catalogHandlers
  await t.rejects(start(t, [...features.filter((f) => f !== catalogRoutes), async (app: FastifyInstance) => { app.registerOperations('catalog', partial) }]), /operation getApp has no handler in routes\/catalog/)
})

t.test('start-up › fails naming a handler without an operation', async (t) => {
  await t.rejects(start(t, [...features.filter((f) => f !== catalogRoutes), async (app: FastifyInstance) => {
    app.registerOperations('catalog', { ...catalogHandlers, deleteEverything: async () => ({}) })
  }]), /handler deleteEverything \(routes\/catalog\) has no operation in the spec/)
})

t.test('start-up › fails when a handler is registered under another tag', async (t) => {
  await t.rejects(start(t, [catalogRoutes, async (app: FastifyInstance) => {
    app.registerOperations('system', { getApp: catalogHandlers.getApp } as never)
  }]), /handler getApp is in routes\/system but its operation is tagged catalog/)
})

t.test('start-up › every operation bound: the full app starts', async (t) => {
  await t.resolves(start(t, features))
})

t.test('test mode › a response that does not match the spec is a 500 naming the mismatch', async (t) => {
  const app = await buildApp(await testConfig(t), {
    logger: false,
    features: [...features.filter((f) => f !== catalogRoutes), async (app: FastifyInstance) => {
      app.registerOperations('catalog', {
        ...catalogHandlers,
        // A row leaking into the API: extra properties the schema forbids.
        listRegions: async () => ({ items: [{ code: 'us-east-1', name: 'x', enabled: true, location: { latitude: 1, longitude: 2 }, current_ami: 'ami-1' }] }) as never
      })
    }]
  })
  t.teardown(() => app.close())
  const res = await app.inject({ method: 'GET', url: '/v1/regions' })
  t.equal(res.statusCode, 500)
  t.match(res.json().detail, /response 200 of listRegions does not match the spec: .*must NOT have additional properties/)
})
