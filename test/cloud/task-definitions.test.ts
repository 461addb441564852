// The catalog's task-definition check against moto (ECS DescribeTaskDefinition through the real SDK client):
// an app is set to run on a pinned revision or the family's latest only when ECS has it, active.
// Region eu-north-1 is this file's alone (test/helpers/moto.ts).
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { DeregisterTaskDefinitionCommand, ECSClient, RegisterTaskDefinitionCommand } from '@aws-sdk/client-ecs'
import { awsSettings } from '../helpers/aws.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { moto } from '../helpers/moto.js'

const region = 'eu-north-1'
const server = await moto()
if (server.skip) t.comment(server.skip)

t.test('setAppRegion › on ECS › an active revision or the latest is taken; a deregistered or unknown one is 422', { skip: server.skip }, async (t) => {
  const ecs = new ECSClient({ region })
  t.teardown(() => ecs.destroy())
  const family = `fractal-krita-${randomBytes(4).toString('hex')}`
  const register = () => ecs.send(new RegisterTaskDefinitionCommand({
    family, containerDefinitions: [{ name: 'fractal-container', image: 'fractal/krita:latest', memory: 2048 }]
  }))
  await register()
  await register()
  await ecs.send(new DeregisterTaskDefinitionCommand({ taskDefinition: `${family}:1` }))

  const app = await build(t, { ...awsSettings })
  await given(app).region({ code: region })
  const offered = await given(app).app()
  const dev = await given(app).signedIn({ role: 'developer' })
  const put = (taskDefinition: { family: string, revision: number | null }) =>
    app.inject({ method: 'PUT', url: `/v1/admin/apps/${offered.id}/regions/${region}`, payload: { taskDefinition }, headers: dev.headers })

  const pinned = await put({ family, revision: 2 })
  t.equal(pinned.statusCode, 200, 'a pinned active revision')
  t.same(pinned.json().regions[0].taskDefinition, { family, revision: 2 })
  const latest = await put({ family, revision: null })
  t.equal(latest.statusCode, 200)
  const audit = await app.db.selectFrom('audit_event').select('details').where('action', '=', 'app.region_set').where('target_id', '=', offered.id).orderBy('id', 'desc').executeTakeFirstOrThrow()
  t.match(audit.details, { taskDefinition: family, resolvedRevision: 2 })
  t.equal((await put({ family, revision: 1 })).statusCode, 422, 'deregistered')
  t.equal((await put({ family, revision: 3 })).statusCode, 422, 'never registered')
  t.equal((await put({ family: `${family}-other`, revision: 1 })).statusCode, 422, 'an unknown family')
  const stored = await app.db.selectFrom('app_region').select('task_definition').where('app_id', '=', offered.id).executeTakeFirstOrThrow()
  t.equal(stored.task_definition, family, 'the last accepted: the latest')
})
