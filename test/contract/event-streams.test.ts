// Every operation answering text/event-stream is capped (issue 18, item 12): it declares 429, and its route
// admits each stream through plugins/event-streams.ts after its security.
import t from 'tap'
import type { FastifyInstance, RouteOptions } from 'fastify'
import { buildApp, features } from '../../app.js'
import { appWithSpec } from '../helpers/app-with-spec.js'
import { testConfig } from '../helpers/build.js'
import { dereference } from '../../openapi/spec.js'

t.test('contract › every event-stream operation of the spec declares 429 and its route takes a stream slot after its security', async (t) => {
  const routes: RouteOptions[] = []
  const app = await buildApp(await testConfig(t), {
    logger: false,
    features: [async (app: FastifyInstance) => {
      app.addHook('onRoute', (route) => { routes.push(route) })
      for (const feature of features) await app.register(feature)
    }]
  })
  t.teardown(() => app.close())
  await app.ready()
  const streaming = Object.values<any>((await dereference(app.openapi.document)).paths).flatMap((item) => Object.values<any>(item))
    .filter((op) => Object.values<any>(op?.responses ?? {}).some((r) => r.content?.['text/event-stream']))
  t.ok(streaming.length >= 1, `${streaming.map((op) => op.operationId).join(', ')}`)
  for (const op of streaming) {
    t.ok(op.responses['429'], `${op.operationId} declares 429`)
    const route = routes.find((r) => r.config?.operationId === op.operationId)
    t.equal(route?.config?.eventStream, true, `${op.operationId} is marked as an event stream`)
    // In the order Fastify runs them.
    const chain = (['onRequest', 'preParsing', 'preValidation', 'preHandler'] as const)
      .flatMap((hook) => [route?.[hook] ?? []].flat() as Array<{ name: string }>).map((h) => h.name)
    t.ok(chain.includes('admit') && chain.indexOf('checkSecurity') < chain.indexOf('admit') && chain.indexOf('checkSecurity') >= 0,
      `${op.operationId}: its security, then the stream slot (${chain.join(', ')})`)
  }
})

t.test('start-up › refuses an event-stream operation that declares no 429', async (t) => {
  await t.rejects(appWithSpec(t, (document) => { delete document.paths['/v1/jobs/{jobId}/events'].get.responses['429'] }),
    /operation streamJobEvents answers text\/event-stream but declares no 429/)
})
