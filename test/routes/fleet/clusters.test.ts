// Clusters, end to end: the real app, its real worker on Redis and its real EC2 / Auto Scaling / ECS SDK
// clients, the cloud played by a stateful model at the SDK boundary (test/helpers/fleet-model.ts). One
// model per test, restored after the app closed; an app per test, except the refusals and reads, which
// share one (onShared). The model mocks the ECS and EC2 clients, so these tests keep to their own file
// (test/helpers/ecs-model.ts mocks the same classes).
import { randomBytes, randomUUID } from 'node:crypto'
import t, { type Test } from 'tap'
import type { CreateAutoScalingGroupCommandInput, UpdateAutoScalingGroupCommandInput } from '@aws-sdk/client-auto-scaling'
import type { CreateLaunchTemplateCommandInput } from '@aws-sdk/client-ec2'
import type { CreateCapacityProviderCommandInput, CreateClusterCommandInput, StopTaskCommandInput } from '@aws-sdk/client-ecs'
import type { ContainerState } from '../../../db/types.js'
import { awsSettings, testInstanceProfile, testSecurityGroups } from '../../helpers/aws.js'
import { build, type Overrides } from '../../helpers/build.js'
import { connectionReset, fleetModel, type FleetModel } from '../../helpers/fleet-model.js'
import { bearer, given } from '../../helpers/given.js'
import { until } from '../../helpers/wait.js'

type App = Awaited<ReturnType<typeof build>>
type Headers = Record<string, string>

const publicUrl = 'https://api.fractal.test'
const regionAmi = 'ami-0123456789abcdef0'
// Job retries after 50 ms, 100 ms… instead of 1 s, 2 s… (what is tested is that they happen, not when).
const aws: Overrides = { ...awsSettings, CLUSTER_POLL_MS: '20', QUEUE_RETRY_BACKOFF_MS: '50', PUBLIC_URL: publicUrl }
const base = '/v1/admin/clusters'

const create = (app: App, headers: Headers, body: unknown) => app.inject({ method: 'POST', url: base, payload: body as object, headers })
const list = (app: App, headers: Headers, query: Record<string, string> = {}) => app.inject({ method: 'GET', url: base, query, headers })
const get = (app: App, headers: Headers, id: string) => app.inject({ method: 'GET', url: `${base}/${id}`, headers })
const patch = (app: App, headers: Headers, id: string, body: unknown) => app.inject({ method: 'PATCH', url: `${base}/${id}`, payload: body as object, headers })
const remove = (app: App, headers: Headers, id: string, query: Record<string, string> = {}) => app.inject({ method: 'DELETE', url: `${base}/${id}`, query, headers })
const ids = (body: { items: Array<{ id: string }> }) => body.items.map((c) => c.id)
const decode = (base64: string | undefined) => Buffer.from(base64 ?? '', 'base64').toString('utf8')

/** A problem answer: status, problem+json, its stable code (and, for field errors, the fields named). */
function isProblem (t: Test, res: Awaited<ReturnType<App['inject']>>, status: number, code: string, fields: string[] = []) {
  t.equal(res.statusCode, status, `${status} ${code}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  const body = res.json()
  t.equal(body.code, code)
  for (const field of fields) t.ok((body.errors ?? []).some((e: { field: string }) => e.field === field), `names ${field}: ${JSON.stringify(body.errors)}`)
  return body
}

/**
 * An app on "AWS" (the model) with a region whose current AMI is set, a signed-in developer (fleet:read and
 * fleet:write), and helpers to act and look. `model: null` builds the app on the simulated provider.
 */
async function onAws (t: Test, overrides: Overrides = {}, model: FleetModel | null = fleetModel(), regionCode?: string) {
  // Restored after the app closed (teardowns run last-in first-out): no job ever reaches the real AWS.
  if (model) t.teardown(() => model.restore())
  const app = await build(t, model ? { ...aws, ...overrides } : { CLUSTER_POLL_MS: '20', QUEUE_RETRY_BACKOFF_MS: '50', ...overrides })
  const region = await given(app).region(regionCode ? { code: regionCode } : {})
  await app.db.updateTable('region').set({ current_ami: regionAmi }).where('code', '=', region.code).execute()
  const dev = await given(app).signedIn({ role: 'developer' })
  const readJob = async (id: string) => (await app.inject({ method: 'GET', url: `/v1/jobs/${id}`, headers: dev.headers })).json()
  const readCluster = async (id: string) => (await get(app, dev.headers, id)).json()
  const row = (id: string) => app.db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  const untilJob = (id: string, state: string, ms?: number) => until(async () => (await readJob(id)).state === state, ms)
  let working = false
  const startWorker = () => {
    if (!working) app.queue.startWorker(2)
    working = true
  }
  /** POST /v1/admin/clusters answered 202 (the worker not started). */
  const createCluster = async (body: object = {}) => {
    const res = await create(app, dev.headers, { region: region.code, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 3, ...body })
    if (res.statusCode !== 202) throw new Error(`createCluster: ${res.statusCode} ${res.body}`)
    return res.json() as { cluster: { id: string, name: string }, job: { id: string } }
  }
  /** A cluster made through the API and the worker, active. */
  const activeCluster = async (body: object = {}) => {
    const { cluster, job } = await createCluster(body)
    startWorker()
    if (!await untilJob(job.id, 'succeeded')) throw new Error(`the cluster did not become active: ${JSON.stringify(await readJob(job.id))}`)
    return row(cluster.id)
  }
  /** DELETE answered 202 (the worker started). */
  const deleteCluster = async (id: string, query: Record<string, string> = {}) => {
    const res = await remove(app, dev.headers, id, query)
    if (res.statusCode !== 202) throw new Error(`deleteCluster: ${res.statusCode} ${res.body}`)
    startWorker()
    return res.json() as { cluster: { id: string, status: string }, job: { id: string, state: string } }
  }
  return { app, model: model!, region: region.code, dev, readJob, readCluster, row, untilJob, startWorker, createCluster, activeCluster, deleteCluster }
}

const root = t
let sharedApp: Promise<App> | undefined
/**
 * For the tests that are refused or only read (no worker, nothing made in the cloud): one app for all of
 * them, closed when the file ends. Each test has its own region, clusters and users, and looks only at
 * those; its own model records that nothing was sent.
 */
async function onShared (t: Test) {
  const model = fleetModel()
  t.teardown(() => model.restore())
  const app = await (sharedApp ??= build(root, aws))
  const region = await given(app).region()
  await app.db.updateTable('region').set({ current_ami: regionAmi }).where('code', '=', region.code).execute()
  const dev = await given(app).signedIn({ role: 'developer' })
  const row = (id: string) => app.db.selectFrom('cluster').selectAll().where('id', '=', id).executeTakeFirstOrThrow()
  /** The clusters of this test's region, the jobs and audit events of this test's developer. */
  const written = async () => ({
    clusters: (await app.db.selectFrom('cluster').select('id').where('region_code', '=', region.code).execute()).length,
    jobs: (await app.db.selectFrom('job').select('id').where('owner_id', '=', dev.account.id).execute()).length,
    audit: (await app.db.selectFrom('audit_event').select('id').where('actor_id', '=', dev.account.id).execute()).length
  })
  return { app, model, region: region.code, dev, row, written }
}

/** A cluster row written directly (no job, nothing in the cloud): for reads and refusals. */
async function givenCluster (app: App, region: string, fields: Partial<{ status: 'creating' | 'active' | 'deleting' | 'deleted' | 'failed', createdAt: Date, minSize: number, maxSize: number }> = {}) {
  const name = `fractal-${region}-${randomBytes(3).toString('hex')}`
  return app.db.insertInto('cluster').values({
    region_code: region,
    name,
    status: fields.status ?? 'active',
    capacity: (fields.maxSize ?? 2) * 4,
    capacity_provider: `${name}-capacity`,
    instance_type: 'g4dn.xlarge',
    ami: regionAmi,
    min_size: fields.minSize ?? 1,
    max_size: fields.maxSize ?? 2,
    ...(fields.createdAt ? { created_at: fields.createdAt } : {})
  }).returningAll().executeTakeFirstOrThrow()
}

/** Containers on a cluster, one per state (a task ARN for each, running in the model when one is given). */
async function givenContainers (app: App, cluster: { id: string, name: string, region_code: string }, states: ContainerState[], model?: FleetModel) {
  const offered = await given(app).app({ regions: [cluster.region_code] })
  const rows = []
  for (const state of states) {
    const taskArn = model ? model.addTask(cluster.region_code, cluster.name).taskArn : `arn:aws:ecs:${cluster.region_code}:000000000000:task/${cluster.name}/${randomBytes(16).toString('hex')}`
    rows.push(await app.db.insertInto('container').values({
      app_id: offered.id,
      region_code: cluster.region_code,
      cluster_id: cluster.id,
      user_id: null,
      state,
      aes_key: randomBytes(16).toString('hex'),
      secret_hash: randomBytes(32).toString('base64url'),
      task_arn: taskArn
    }).returningAll().executeTakeFirstOrThrow())
  }
  return rows
}

const auditOf = (app: App, clusterId: string) =>
  app.db.selectFrom('audit_event').selectAll().where('target_type', '=', 'cluster').where('target_id', '=', clusterId).orderBy('at').execute()

// ---------------------------------------------------------------------------------------------------------
// createCluster
// ---------------------------------------------------------------------------------------------------------

t.test('createCluster › valid › 202 with the job; the worker makes launch template, group, capacity provider and cluster, and it is active', async (t) => {
  const { app, model, region, dev, readJob, readCluster, row, untilJob, startWorker } = await onAws(t, { FLEET_SUBNETS: 'subnet-0a1b2c, subnet-3d4e5f', CONTAINERS_PER_HOST: '3' })

  const res = await create(app, dev.headers, { region, instanceType: 'g4dn.2xlarge', minSize: 1, maxSize: 4 })

  t.equal(res.statusCode, 202)
  const { cluster, job } = res.json()
  t.equal(res.headers.location, `/v1/jobs/${job.id}`)
  t.match(job, { kind: 'create_cluster', state: 'queued', errorCode: null })
  t.match(cluster, {
    region, status: 'creating', instanceType: 'g4dn.2xlarge', ami: regionAmi, minSize: 1, maxSize: 4, capacity: 12, capacityProvider: null, liveContainers: 0, usage: null
  })
  t.match(cluster.name, new RegExp(`^fractal-${region}-[0-9a-f]{6}$`))
  t.equal(model.log.length, 0, 'nothing is sent before the worker runs')
  const audit = await auditOf(app, cluster.id)
  t.match(audit, [{ action: 'cluster.create', actor_id: dev.account.id, details: { name: cluster.name, region, instanceType: 'g4dn.2xlarge', ami: regionAmi, minSize: 1, maxSize: 4 } }])

  startWorker()
  t.ok(await untilJob(job.id, 'succeeded'), 'the create job succeeds')
  t.match(await readJob(job.id), { state: 'succeeded', progress: 100, result: { clusterId: cluster.id } })
  const capacityProvider = `${cluster.name}-capacity`
  const shown = await readCluster(cluster.id)
  t.match(shown, { status: 'active', capacityProvider, capacity: 12 })
  t.match(shown.usage, { instances: 1, desired: 1, tasks: 0, cpuLeft: 4096, memoryLeftMb: 15000 }, 'a first usage snapshot is taken')

  // What the cloud received, in order, in the cluster's region.
  t.same(model.succeeded('CreateLaunchTemplate', 'CreateAutoScalingGroup', 'CreateCapacityProvider', 'CreateCluster'),
    ['CreateLaunchTemplate', 'CreateAutoScalingGroup', 'CreateCapacityProvider', 'CreateCluster'])
  t.ok(model.log.every((c) => c.region === region), 'every call went to the cluster\'s region')
  const [lt] = model.received<CreateLaunchTemplateCommandInput>('CreateLaunchTemplate')
  t.match(lt, {
    LaunchTemplateName: cluster.name,
    LaunchTemplateData: {
      ImageId: regionAmi,
      InstanceType: 'g4dn.2xlarge',
      IamInstanceProfile: { Name: testInstanceProfile },
      NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: true, Groups: testSecurityGroups }],
      MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1 }
    }
  }, 'the hosts can register with ECS, be reached, and keep the metadata from their containers')
  const userData = decode(lt?.LaunchTemplateData?.UserData)
  t.match(userData, `ECS_CLUSTER=${cluster.name}`, 'the hosts join the cluster')
  t.match(userData, `FRACTAL_API_URL=${publicUrl}`, 'and their agent calls us')
  const [group] = model.received<CreateAutoScalingGroupCommandInput>('CreateAutoScalingGroup')
  const template = model.launchTemplates[0]!
  t.match(group, {
    AutoScalingGroupName: cluster.name,
    MinSize: 1,
    MaxSize: 4,
    LaunchTemplate: { LaunchTemplateId: template.id, Version: '1' },
    NewInstancesProtectedFromScaleIn: true,
    VPCZoneIdentifier: 'subnet-0a1b2c,subnet-3d4e5f'
  })
  const modelGroup = model.group(cluster.name)!
  const [cp] = model.received<CreateCapacityProviderCommandInput>('CreateCapacityProvider')
  t.match(cp, { name: capacityProvider, autoScalingGroupProvider: { autoScalingGroupArn: modelGroup.arn, managedScaling: { status: 'ENABLED' } } })
  const [ecsCluster] = model.received<CreateClusterCommandInput>('CreateCluster')
  t.match(ecsCluster, { clusterName: cluster.name, capacityProviders: [capacityProvider], defaultCapacityProviderStrategy: [{ capacityProvider }] })
  t.same(model.exists(), { launchTemplates: [cluster.name], groups: [cluster.name], capacityProviders: [capacityProvider], clusters: [cluster.name] })

  // The row records each step, so a retry or a delete knows what exists.
  t.match((await row(cluster.id)).steps, { launchTemplateId: template.id, launchTemplateVersion: '1', autoScalingGroupArn: modelGroup.arn, capacityProvider, ecsCluster: true })
})

t.test('createCluster › valid › ami defaults to the region\'s current AMI, a given one wins; subnets per region, else the default VPC\'s', async (t) => {
  const west = 'xx-west-1'
  const { app, model, region, createCluster, untilJob, startWorker } = await onAws(t, { FLEET_SUBNETS: `${west}=subnet-w1|subnet-w2;xx-elsewhere-1=subnet-e1` }, fleetModel(), west)
  const other = await given(app).region({ code: 'xx-other-1' })
  await app.db.updateTable('region').set({ current_ami: 'ami-0fedcba9876543210' }).where('code', '=', other.code).execute()

  const byDefault = await createCluster({ minSize: 0 })
  const given1 = await createCluster({ region: other.code, ami: 'ami-00000000aaaaaaaa1', minSize: 0 })

  t.ok(byDefault.cluster.name.startsWith(`fractal-${region}-`))
  t.match(byDefault.cluster, { ami: regionAmi })
  t.match(given1.cluster, { ami: 'ami-00000000aaaaaaaa1' })
  startWorker()
  t.ok(await untilJob(byDefault.job.id, 'succeeded'))
  t.ok(await untilJob(given1.job.id, 'succeeded'))
  const lts = model.received<CreateLaunchTemplateCommandInput>('CreateLaunchTemplate')
  const ltOf = (name: string) => lts.find((i) => i.LaunchTemplateName === name)
  t.equal(ltOf(byDefault.cluster.name)?.LaunchTemplateData?.ImageId, regionAmi)
  t.equal(ltOf(given1.cluster.name)?.LaunchTemplateData?.ImageId, 'ami-00000000aaaaaaaa1')
  const groups = model.received<CreateAutoScalingGroupCommandInput>('CreateAutoScalingGroup')
  const groupOf = (name: string) => groups.find((i) => i.AutoScalingGroupName === name)
  t.equal(groupOf(byDefault.cluster.name)?.VPCZoneIdentifier, 'subnet-w1,subnet-w2', 'the subnets of the cluster\'s region')
  t.equal(groupOf(given1.cluster.name)?.VPCZoneIdentifier, `subnet-default-${other.code}-a,subnet-default-${other.code}-b`,
    'a region with no entry: the default subnets of its default VPC')
  t.match(model.received('DescribeSubnets'), [{ Filters: [{ Name: 'default-for-az', Values: ['true'] }] }], 'looked up once, for that region only')
  t.equal(model.group(given1.cluster.name)?.region, other.code)
})

t.test('createCluster › invalid input › minSize above maxSize: 422 naming minSize; nothing written, nothing sent', async (t) => {
  const { app, model, region, dev, written } = await onShared(t)

  const res = await create(app, dev.headers, { region, instanceType: 'g4dn.xlarge', minSize: 5, maxSize: 2 })

  isProblem(t, res, 422, 'unprocessable', ['/body/minSize'])
  t.same(await written(), { clusters: 0, jobs: 0, audit: 0 }, 'no cluster, no job, no audit')
  t.equal(model.log.length, 0)
})

t.test('createCluster › invalid input › malformed fields: 400 validation_failed naming each; nothing written', async (t) => {
  const { app, model, region, dev, written } = await onShared(t)
  const good = { region, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 }
  const cases: Array<[string, object, string]> = [
    ['an instance type that is no instance type', { ...good, instanceType: 'G4DN XL' }, '/body/instanceType'],
    ['an instance type without a size', { ...good, instanceType: 'g4dn' }, '/body/instanceType'],
    ['an ami that is not ami-<hex>', { ...good, ami: 'ami-xyz' }, '/body/ami'],
    ['an image id of another kind', { ...good, ami: 'img-0123456789abcdef0' }, '/body/ami'],
    ['an unknown field', { ...good, desiredSize: 2 }, '/body/desiredSize'],
    ['a negative minSize', { ...good, minSize: -1 }, '/body/minSize'],
    ['a maxSize of 0', { ...good, maxSize: 0 }, '/body/maxSize'],
    ['a maxSize that is a string', { ...good, maxSize: '3' }, '/body/maxSize'],
    ['no region', { instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 }, '/body/region'],
    ['a region code that is no region code', { ...good, region: 'Mars' }, '/body/region']
  ]
  for (const [what, body, field] of cases) {
    t.test(what, async (t) => {
      isProblem(t, await create(app, dev.headers, body), 400, 'validation_failed', [field])
    })
  }
  isProblem(t, await app.inject({ method: 'POST', url: base, payload: 'region=x', headers: { ...dev.headers, 'content-type': 'text/plain' } }), 415, 'unsupported_media_type')
  t.same(await written(), { clusters: 0, jobs: 0, audit: 0 }, 'no cluster, no job, no audit')
  t.equal(model.log.length, 0)
})

t.test('createCluster › invalid input › no AMI for the region and none given: 422 naming ami', async (t) => {
  const { app, model, region, dev, written } = await onShared(t)
  await app.db.updateTable('region').set({ current_ami: null }).where('code', '=', region).execute()

  const res = await create(app, dev.headers, { region, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 })

  isProblem(t, res, 422, 'unprocessable', ['/body/ami'])
  t.same(await written(), { clusters: 0, jobs: 0, audit: 0 }, 'no cluster, no job, no audit')
  t.equal(model.log.length, 0)
})

t.test('createCluster › non-existing › an unknown region: 404 not_found; nothing written', async (t) => {
  const { app, model, dev, written } = await onShared(t)

  const res = await create(app, dev.headers, { region: 'xx-nowhere-9', instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 })

  isProblem(t, res, 404, 'not_found')
  t.same(await written(), { clusters: 0, jobs: 0, audit: 0 }, 'no cluster, no job, no audit')
  t.equal(model.log.length, 0)
})

t.test('createCluster › insufficient permissions › a user 403, no token 401, a bad token 401, a token with only fleet:read 403', async (t) => {
  const { app, model, region, written } = await onShared(t)
  const body = { region, instanceType: 'g4dn.xlarge', minSize: 1, maxSize: 2 }
  const user = await given(app).signedIn()
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))
  const tampered = bearer(`${(await given(app).token({ role: 'admin', scopes: ['fleet:write'] })).slice(0, -4)}AAAA`)

  isProblem(t, await create(app, user.headers, body), 403, 'forbidden')
  isProblem(t, await create(app, {}, body), 401, 'unauthorized')
  t.equal((await create(app, tampered, body)).statusCode, 401)
  isProblem(t, await create(app, reader, body), 403, 'forbidden')
  t.equal((await written()).clusters, 0, 'nothing written')
  t.equal(model.log.length, 0, 'nothing sent')
})

t.test('createCluster › faults › every create call throttled once: retried with backoff, active, each resource made once', async (t) => {
  const model = fleetModel()
  for (const command of ['CreateLaunchTemplate', 'CreateAutoScalingGroup', 'CreateCapacityProvider', 'CreateCluster'] as const) model.throttle(command, 1)
  const { readJob, readCluster, untilJob, createCluster, startWorker } = await onAws(t, {}, model)

  const { cluster, job } = await createCluster()
  startWorker()

  t.ok(await until(async () => /busy \(ThrottlingException\); retrying/.test((await readJob(job.id)).message ?? '')), 'the job says the cloud is busy')
  t.ok(await untilJob(job.id, 'succeeded', 30_000), 'the create gets past the throttling (4 retries: 1 + 2 + 4 + 8 s)')
  t.match(await readCluster(cluster.id), { status: 'active', capacityProvider: `${cluster.name}-capacity` })
  t.equal(model.pendingFaults(), 0, 'every throttle was met')
  for (const command of ['CreateLaunchTemplate', 'CreateAutoScalingGroup', 'CreateCapacityProvider', 'CreateCluster'] as const) {
    t.equal(model.calls(command), 2, `${command}: throttled once, then through`)
  }
  t.equal(model.launchTemplates.length, 1, 'one launch template ever')
  t.equal(model.groups.length, 1, 'one group ever')
  t.equal(model.capacityProviders.length, 1, 'one capacity provider ever')
  t.equal(model.clusters.length, 1, 'one ECS cluster ever')
})

t.test('createCluster › faults › a permanent failure at CreateCapacityProvider: cluster failed, job cluster_create_failed, what was made is deleted', async (t) => {
  const model = fleetModel()
  model.failPermanently('CreateCapacityProvider', 1)
  const { readJob, readCluster, row, untilJob, createCluster, startWorker } = await onAws(t, {}, model)

  const { cluster, job } = await createCluster({ minSize: 0 })
  startWorker()

  t.ok(await untilJob(job.id, 'failed'))
  t.match(await readJob(job.id), { state: 'failed', errorCode: 'cluster_create_failed', message: /not valid \(fleet-model\)/ })
  t.match(await readCluster(cluster.id), { status: 'failed' })
  t.equal(model.calls('CreateCapacityProvider'), 1, 'a permanent error is not retried')
  t.equal(model.calls('CreateCluster'), 0)
  const template = model.launchTemplates[0]!
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] }, 'the launch template and the group are gone')
  t.match(model.received('DeleteAutoScalingGroup'), [{ AutoScalingGroupName: cluster.name, ForceDelete: true }])
  t.match(model.received('DeleteLaunchTemplate'), [{ LaunchTemplateId: template.id }])
  t.same(model.succeeded('DeleteAutoScalingGroup', 'DeleteLaunchTemplate'), ['DeleteAutoScalingGroup', 'DeleteLaunchTemplate'], 'newest first')
  t.match((await row(cluster.id)).steps, { deleted: ['scaledToZero', 'autoScalingGroup', 'launchTemplate'] })
  await new Promise((resolve) => setTimeout(resolve, 1200))
  t.equal(model.calls('CreateCapacityProvider'), 1, 'and the job does not come back')
})

t.test('createCluster › faults › a permanent failure after the group launched hosts: the group and launch template are still deleted', async (t) => {
  // Real instances take minutes to terminate: after the group is scaled to zero they stay listed as
  // Terminating. The creation failed; what it made must still go (ForceDelete, or waiting as a delete does).
  const model = fleetModel({ drain: 'hold' })
  model.failPermanently('CreateCapacityProvider', 1)
  const { readJob, readCluster, untilJob, createCluster, startWorker } = await onAws(t, {}, model)

  const { cluster, job } = await createCluster({ minSize: 2, maxSize: 3 })
  startWorker()

  t.ok(await untilJob(job.id, 'failed'))
  t.match(await readJob(job.id), { errorCode: 'cluster_create_failed' })
  t.match(await readCluster(cluster.id), { status: 'failed' })
  t.equal(model.group(cluster.name)?.desired ?? 0, 0, 'the group was scaled to zero')
  model.terminateInstances()
  t.ok(await until(() => model.exists().groups.length === 0 && model.exists().launchTemplates.length === 0, 3000),
    `the group and launch template are deleted (left: ${JSON.stringify(model.exists())})`)
})

t.test('createCluster › faults › the connection drops at CreateCapacityProvider: the retry resumes, no second launch template or group', async (t) => {
  const model = fleetModel()
  model.failWith('CreateCapacityProvider', 1, connectionReset)
  const { readCluster, row, untilJob, createCluster, startWorker } = await onAws(t, {}, model)

  const { cluster, job } = await createCluster()
  startWorker()

  t.ok(await untilJob(job.id, 'succeeded', 15_000))
  t.match(await readCluster(cluster.id), { status: 'active' })
  t.equal(model.calls('CreateLaunchTemplate'), 1, 'the launch template was not made again')
  t.equal(model.calls('CreateAutoScalingGroup'), 1, 'nor the group')
  t.equal(model.calls('CreateCapacityProvider'), 2)
  t.equal(model.launchTemplates.length, 1)
  t.equal(model.groups.length, 1)
  t.equal((await row(cluster.id)).steps.launchTemplateId, model.launchTemplates[0]!.id)
})

t.test('createCluster › faults › a worker died after recording the group: the job resumes at the capacity provider', async (t) => {
  const { app, model, region, readCluster, untilJob, createCluster, startWorker } = await onAws(t)
  const { cluster, job } = await createCluster({ minSize: 1, maxSize: 2 })
  // What the dead worker made and recorded before it went.
  const template = model.addLaunchTemplate(region, cluster.name)
  const group = model.addGroup(region, cluster.name, { launchTemplateId: template.id, minSize: 1, maxSize: 2 })
  await app.db.updateTable('cluster').set({ steps: JSON.stringify({ launchTemplateId: template.id, autoScalingGroupArn: group.arn }) }).where('id', '=', cluster.id).execute()

  startWorker()

  t.ok(await untilJob(job.id, 'succeeded'))
  t.match(await readCluster(cluster.id), { status: 'active' })
  t.equal(model.calls('CreateLaunchTemplate'), 0, 'no second launch template')
  t.equal(model.calls('CreateAutoScalingGroup'), 0, 'no second group')
  t.match(model.received<CreateCapacityProviderCommandInput>('CreateCapacityProvider'), [{ autoScalingGroupProvider: { autoScalingGroupArn: group.arn } }])
  t.equal(model.launchTemplates.length, 1)
  t.equal(model.groups.length, 1)
})

t.test('createCluster › faults › a worker died after making the launch template and group, before recording them: found, not made twice', async (t) => {
  const { model, region, row, readCluster, untilJob, createCluster, startWorker } = await onAws(t)
  const { cluster, job } = await createCluster({ minSize: 1, maxSize: 2 })
  // AWS has them; the row does not know (the worker died between the call and the record).
  const template = model.addLaunchTemplate(region, cluster.name)
  const group = model.addGroup(region, cluster.name, { launchTemplateId: template.id, minSize: 1, maxSize: 2 })

  startWorker()

  t.ok(await untilJob(job.id, 'succeeded'))
  t.match(await readCluster(cluster.id), { status: 'active' })
  t.equal(model.launchTemplates.length, 1, 'one launch template ever')
  t.equal(model.groups.length, 1, 'one group ever')
  t.match((await row(cluster.id)).steps, { launchTemplateId: template.id, autoScalingGroupArn: group.arn }, 'the existing ones are recorded')
  t.match(model.received<CreateCapacityProviderCommandInput>('CreateCapacityProvider'), [{ autoScalingGroupProvider: { autoScalingGroupArn: group.arn } }])
})

// ---------------------------------------------------------------------------------------------------------
// listClusters
// ---------------------------------------------------------------------------------------------------------

t.test('listClusters › valid › newest first with live containers; deleted ones only with status=deleted; filters by region and status', async (t) => {
  const { app, region, dev } = await onAws(t, {}, null)
  const other = (await given(app).region()).code
  const now = Date.now()
  const oldest = await givenCluster(app, region, { createdAt: new Date(now - 4000) })
  const failed = await givenCluster(app, region, { status: 'failed', createdAt: new Date(now - 3000) })
  const elsewhere = await givenCluster(app, other, { createdAt: new Date(now - 2000) })
  const deleted = await givenCluster(app, region, { status: 'deleted', createdAt: new Date(now - 1000) })
  await givenContainers(app, oldest, ['in_use', 'available', 'starting', 'stopped', 'failed'])
  await givenContainers(app, elsewhere, ['stopping'])

  const all = await list(app, dev.headers)

  t.equal(all.statusCode, 200)
  t.same(ids(all.json()), [elsewhere.id, failed.id, oldest.id], 'newest first, no deleted cluster')
  t.equal(all.json().nextCursor, null)
  const byId = new Map(all.json().items.map((c: { id: string }) => [c.id, c]))
  t.match(byId.get(oldest.id), { name: oldest.name, region, status: 'active', liveContainers: 3, capacity: 8, minSize: 1, maxSize: 2, capacityProvider: `${oldest.name}-capacity`, usage: null })
  t.match(byId.get(elsewhere.id), { liveContainers: 1 }, 'a stopping container still counts')
  t.match(byId.get(failed.id), { status: 'failed', liveContainers: 0 })

  t.same(ids((await list(app, dev.headers, { region })).json()), [failed.id, oldest.id], 'one region')
  t.same(ids((await list(app, dev.headers, { status: 'failed' })).json()), [failed.id], 'one status')
  t.same(ids((await list(app, dev.headers, { status: 'deleted' })).json()), [deleted.id], 'deleted ones when asked')
  t.same(ids((await list(app, dev.headers, { region: other, status: 'failed' })).json()), [], 'both filters')
})

t.test('listClusters › valid › pages follow nextCursor to the end, no cluster twice', async (t) => {
  const { app, region, dev } = await onAws(t, {}, null)
  const now = Date.now()
  const made = []
  for (let i = 0; i < 5; i++) made.push(await givenCluster(app, region, { createdAt: new Date(now - (5 - i) * 1000) }))
  // Two made in the same millisecond: the id breaks the tie.
  const at = new Date(now - 500)
  made.push(await givenCluster(app, region, { createdAt: at }), await givenCluster(app, region, { createdAt: at }))

  const seen: string[] = []
  let cursor: string | null = null
  let pages = 0
  do {
    const res = await list(app, dev.headers, { limit: '2', ...(cursor ? { cursor } : {}) })
    t.equal(res.statusCode, 200)
    const body = res.json()
    t.ok(body.items.length <= 2)
    seen.push(...ids(body))
    cursor = body.nextCursor
    pages++
  } while (cursor && pages < 10)

  t.equal(pages, 4)
  t.equal(new Set(seen).size, 7, 'no cluster twice')
  const expected = [...made].sort((a, b) => b.created_at.getTime() - a.created_at.getTime() || (a.id < b.id ? 1 : -1)).map((c) => c.id)
  t.same(seen, expected, 'newest first across pages')
})

t.test('listClusters › valid › the usage snapshot is refreshed by the cluster-usage schedule', async (t) => {
  const { app, model, region, dev, activeCluster } = await onAws(t)
  const active = await activeCluster({ minSize: 2, maxSize: 3 })
  const first = (await list(app, dev.headers)).json().items[0]
  t.match(first.usage, { tasks: 0, instances: 2, desired: 2, cpuLeft: 2 * 4096, memoryLeftMb: 2 * 15000 }, 'taken when the cluster became active')

  // Tasks start, hosts fill up.
  model.addTask(region, active.name)
  model.addTask(region, active.name)
  model.setHostResources({ cpu: 1024, memoryMb: 3000 })
  await givenContainers(app, active, ['in_use', 'in_use'])
  t.same(await app.schedules.runOnce('cluster-usage'), { refreshed: 1 })

  const [shown] = (await list(app, dev.headers)).json().items
  t.match(shown, { id: active.id, liveContainers: 2, usage: { tasks: 2, instances: 2, desired: 2, cpuLeft: 2 * 1024, memoryLeftMb: 2 * 3000 } })
  t.ok(new Date(shown.usage.at).getTime() >= new Date(first.usage.at).getTime(), 'a newer snapshot')
  t.same((await get(app, dev.headers, active.id)).json().usage, shown.usage, 'getCluster shows the same snapshot')
})

t.test('listClusters › invalid input › bad limit, status, region or cursor: 400 naming the parameter', async (t) => {
  const { app, dev } = await onShared(t)
  const cases: Array<[Record<string, string>, string]> = [
    [{ limit: '0' }, '/query/limit'],
    [{ limit: '101' }, '/query/limit'],
    [{ limit: 'ten' }, '/query/limit'],
    [{ status: 'running' }, '/query/status'],
    [{ region: 'EU' }, '/query/region'],
    [{ cursor: 'not a cursor!' }, '/query/cursor']
  ]
  for (const [query, field] of cases) isProblem(t, await list(app, dev.headers, query), 400, 'validation_failed', [field])
  // Well-formed, but not one this API gave out.
  isProblem(t, await list(app, dev.headers, { cursor: Buffer.from('yesterday|nobody').toString('base64url') }), 400, 'bad_request')
})

t.test('listClusters › insufficient permissions › a user 403, no token 401, a token with only fleet:write 403', async (t) => {
  const { app, region } = await onShared(t)
  await givenCluster(app, region)
  const user = await given(app).signedIn()
  const writer = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:write'] }))

  isProblem(t, await list(app, user.headers), 403, 'forbidden')
  isProblem(t, await list(app, {}), 401, 'unauthorized')
  isProblem(t, await list(app, writer), 403, 'forbidden')
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))
  t.equal((await list(app, reader)).statusCode, 200, 'fleet:read is enough')
})

// ---------------------------------------------------------------------------------------------------------
// getCluster
// ---------------------------------------------------------------------------------------------------------

t.test('getCluster › valid › an active cluster: every field, live containers, the last snapshot', async (t) => {
  const { app, dev, row, activeCluster } = await onAws(t, { CONTAINERS_PER_HOST: '5' })
  const active = await activeCluster({ instanceType: 'g5.xlarge', minSize: 1, maxSize: 2 })
  await givenContainers(app, active, ['available', 'stopped'])

  const res = await get(app, dev.headers, active.id)

  t.equal(res.statusCode, 200)
  const now = await row(active.id)
  t.same(res.json(), {
    id: active.id,
    name: active.name,
    region: active.region_code,
    status: 'active',
    instanceType: 'g5.xlarge',
    ami: regionAmi,
    minSize: 1,
    maxSize: 2,
    capacity: 10,
    capacityProvider: `${active.name}-capacity`,
    liveContainers: 1,
    usage: now.usage,
    createdAt: now.created_at.toISOString(),
    updatedAt: now.updated_at.toISOString()
  })
  t.match(res.json().usage, { instances: 1, desired: 1 })
})

t.test('getCluster › invalid input › an id that is not a UUID: 400 naming clusterId', async (t) => {
  const { app, dev } = await onShared(t)
  isProblem(t, await get(app, dev.headers, 'fractal-us-east-1-1'), 400, 'validation_failed', ['/params/clusterId'])
})

t.test('getCluster › non-existing › an unknown id: 404 not_found', async (t) => {
  const { app, dev } = await onShared(t)
  isProblem(t, await get(app, dev.headers, randomUUID()), 404, 'not_found')
})

t.test('getCluster › insufficient permissions › a user 403, no token 401, an expired-looking garbage token 401', async (t) => {
  const { app, region } = await onShared(t)
  const cluster = await givenCluster(app, region)
  const user = await given(app).signedIn()

  isProblem(t, await get(app, user.headers, cluster.id), 403, 'forbidden')
  isProblem(t, await get(app, {}, cluster.id), 401, 'unauthorized')
  t.equal((await get(app, bearer('not.a.token'), cluster.id)).statusCode, 401)
  t.notMatch((await get(app, user.headers, cluster.id)).body, cluster.name, 'nothing of the cluster is shown')
})

// ---------------------------------------------------------------------------------------------------------
// updateCluster
// ---------------------------------------------------------------------------------------------------------

t.test('updateCluster › valid › new sizes go to the group; capacity follows maxSize × CONTAINERS_PER_HOST; audited', async (t) => {
  const { app, model, dev, row, activeCluster } = await onAws(t, { CONTAINERS_PER_HOST: '3' })
  const active = await activeCluster({ minSize: 1, maxSize: 2 })
  const before = model.calls('UpdateAutoScalingGroup')

  const res = await patch(app, dev.headers, active.id, { maxSize: 6 })

  t.equal(res.statusCode, 200)
  t.match(res.json(), { id: active.id, status: 'active', minSize: 1, maxSize: 6, capacity: 18 })
  t.equal(model.calls('UpdateAutoScalingGroup'), before + 1)
  const sent = model.received<UpdateAutoScalingGroupCommandInput>('UpdateAutoScalingGroup').at(-1)!
  t.same({ AutoScalingGroupName: sent.AutoScalingGroupName, MinSize: sent.MinSize, MaxSize: sent.MaxSize }, { AutoScalingGroupName: active.name, MinSize: 1, MaxSize: 6 })
  t.equal(sent.DesiredCapacity, undefined, 'the desired count is left to managed scaling')
  t.match(model.group(active.name), { minSize: 1, maxSize: 6 })
  t.match(await row(active.id), { min_size: 1, max_size: 6, capacity: 18 })
  const audit = (await auditOf(app, active.id)).filter((a) => a.action === 'cluster.resize')
  t.match(audit, [{ actor_id: dev.account.id, details: { from: { min: 1, max: 2 }, to: { min: 1, max: 6 } } }])

  // minSize alone: the group grows to it.
  const grown = await patch(app, dev.headers, active.id, { minSize: 3 })
  t.equal(grown.statusCode, 200)
  t.match(grown.json(), { minSize: 3, maxSize: 6, capacity: 18, usage: { desired: 3, instances: 3 } })
  t.match(model.group(active.name), { minSize: 3, maxSize: 6, desired: 3 })
})

t.test('updateCluster › invalid input › an empty body, unknown fields, bad sizes: 400; nothing changes', async (t) => {
  const { app, model, region, dev, row } = await onShared(t)
  const cluster = await givenCluster(app, region)
  const cases: Array<[object, string | null]> = [
    [{}, null],
    [{ desiredSize: 2 }, '/body/desiredSize'],
    [{ minSize: -1 }, '/body/minSize'],
    [{ maxSize: 0 }, '/body/maxSize'],
    [{ maxSize: 1001 }, '/body/maxSize'],
    [{ maxSize: 2.5 }, '/body/maxSize']
  ]
  for (const [body, field] of cases) isProblem(t, await patch(app, dev.headers, cluster.id, body), 400, 'validation_failed', field ? [field] : [])
  isProblem(t, await patch(app, dev.headers, 'nope', { maxSize: 3 }), 400, 'validation_failed', ['/params/clusterId'])
  t.match(await row(cluster.id), { min_size: 1, max_size: 2 })
  t.equal(model.log.length, 0)
})

t.test('updateCluster › invalid input › minSize above maxSize after the change: 422; nothing sent or written', async (t) => {
  const { app, model, region, dev, row } = await onShared(t)
  const cluster = await givenCluster(app, region, { minSize: 1, maxSize: 2 })

  isProblem(t, await patch(app, dev.headers, cluster.id, { minSize: 5 }), 422, 'unprocessable', ['/body/minSize'])
  isProblem(t, await patch(app, dev.headers, cluster.id, { minSize: 4, maxSize: 3 }), 422, 'unprocessable', ['/body/minSize'])

  t.match(await row(cluster.id), { min_size: 1, max_size: 2, capacity: 8 })
  t.equal(model.log.length, 0)
  t.equal((await auditOf(app, cluster.id)).length, 0)
})

t.test('updateCluster › invalid input › a cluster that is not active: 409 conflict; the group untouched', async (t) => {
  const { app, model, region, dev, row } = await onShared(t)
  for (const status of ['creating', 'deleting', 'deleted', 'failed'] as const) {
    const cluster = await givenCluster(app, region, { status })
    const body = isProblem(t, await patch(app, dev.headers, cluster.id, { maxSize: 5 }), 409, 'conflict')
    t.match(body.detail, status)
    t.match(await row(cluster.id), { max_size: 2, status })
  }
  t.equal(model.log.length, 0)
})

t.test('updateCluster › non-existing › an unknown id: 404 not_found', async (t) => {
  const { app, model, dev } = await onShared(t)
  isProblem(t, await patch(app, dev.headers, randomUUID(), { maxSize: 5 }), 404, 'not_found')
  t.equal(model.log.length, 0)
})

t.test('updateCluster › insufficient permissions › a user 403, no token 401, a token with only fleet:read 403; nothing changes', async (t) => {
  const { app, model, region, row } = await onShared(t)
  const cluster = await givenCluster(app, region)
  const user = await given(app).signedIn()
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))

  isProblem(t, await patch(app, user.headers, cluster.id, { maxSize: 5 }), 403, 'forbidden')
  isProblem(t, await patch(app, {}, cluster.id, { maxSize: 5 }), 401, 'unauthorized')
  isProblem(t, await patch(app, reader, cluster.id, { maxSize: 5 }), 403, 'forbidden')
  t.match(await row(cluster.id), { max_size: 2 })
  t.equal(model.log.length, 0)
})

t.test('updateCluster › faults › UpdateAutoScalingGroup throttled: a 5xx problem, the row and the group unchanged, nothing audited', async (t) => {
  const { app, model, dev, row, activeCluster } = await onAws(t)
  const active = await activeCluster({ minSize: 1, maxSize: 2 })
  model.throttle('UpdateAutoScalingGroup', 1)

  const res = await patch(app, dev.headers, active.id, { maxSize: 8 })

  t.ok(res.statusCode >= 500, `answered ${res.statusCode}`)
  t.match(res.headers['content-type'], /^application\/problem\+json/)
  t.match(await row(active.id), { max_size: 2, capacity: 8 })
  t.match(model.group(active.name), { maxSize: 2 })
  t.equal((await auditOf(app, active.id)).filter((a) => a.action === 'cluster.resize').length, 0)
  // Once AWS answers again, the same request goes through.
  t.equal((await patch(app, dev.headers, active.id, { maxSize: 8 })).statusCode, 200)
  t.match(model.group(active.name), { maxSize: 8 })
})

// ---------------------------------------------------------------------------------------------------------
// deleteCluster
// ---------------------------------------------------------------------------------------------------------

const teardownCommands = ['SetInstanceProtection', 'UpdateAutoScalingGroup', 'DeleteCluster', 'DeleteCapacityProvider', 'DeleteAutoScalingGroup', 'DeleteLaunchTemplate'] as const

t.test('deleteCluster › valid › scales the group to zero, waits for the hosts to go, then deletes cluster, capacity provider, group, launch template', async (t) => {
  const model = fleetModel({ drain: 'hold' })
  const { app, dev, readJob, readCluster, row, untilJob, activeCluster, deleteCluster } = await onAws(t, {}, model)
  const active = await activeCluster({ minSize: 2, maxSize: 4 })
  const made = { template: model.launchTemplates[0]!, group: model.group(active.name)! }
  t.equal(made.group.instances.length, 2, 'two hosts run')
  const before = model.log.length

  const { cluster, job } = await deleteCluster(active.id)

  t.match(cluster, { id: active.id, status: 'deleting' })
  t.match(job, { kind: 'delete_cluster', state: 'queued' })
  t.ok(await until(async () => (await readJob(job.id)).message === 'waiting for the hosts to terminate'), 'the job waits for the hosts')
  const scaled = model.received<UpdateAutoScalingGroupCommandInput>('UpdateAutoScalingGroup').at(-1)
  t.match(model.received('SetInstanceProtection'), [{ AutoScalingGroupName: active.name, InstanceIds: made.group.instances.map((i) => i.instanceId), ProtectedFromScaleIn: false }],
    'first its hosts lose their scale-in protection (a scale in skips protected hosts)')
  t.match(scaled, { AutoScalingGroupName: active.name, MinSize: 0, MaxSize: 0, DesiredCapacity: 0, NewInstancesProtectedFromScaleIn: false }, 'then the group is scaled to zero')
  const polls = model.calls('DescribeAutoScalingGroups')
  t.ok(await until(() => model.calls('DescribeAutoScalingGroups') >= polls + 3), 'it looks again (CLUSTER_POLL_MS)')
  t.same(model.log.slice(before).filter((c) => c.command.startsWith('Delete')), [], 'nothing is deleted while hosts are Terminating')
  t.match(await readCluster(active.id), { status: 'deleting' })
  t.match(await readJob(job.id), { state: 'running' })

  model.terminateInstances(active.name)

  t.ok(await untilJob(job.id, 'succeeded'), 'the delete job succeeds once the hosts are gone')
  t.match(await readJob(job.id), { state: 'succeeded', progress: 100, message: 'deleted' })
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.same(model.log.slice(before).filter((c) => c.ok && (teardownCommands as readonly string[]).includes(c.command)).map((c) => c.command), [...teardownCommands], 'in this order, each once')
  t.ok(model.log.slice(before).every((c) => c.ok || c.command === 'DescribeAutoScalingGroups'), 'no call failed')
  t.match(model.received('DeleteCluster'), [{ cluster: active.name }])
  t.match(model.received('DeleteCapacityProvider'), [{ capacityProvider: `${active.name}-capacity` }])
  t.match(model.received('DeleteAutoScalingGroup'), [{ AutoScalingGroupName: active.name, ForceDelete: true }])
  t.match(model.received('DeleteLaunchTemplate'), [{ LaunchTemplateId: made.template.id }])
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] }, 'nothing is left')
  t.same((await row(active.id)).steps.deleted, ['scaledToZero', 'ecsCluster', 'capacityProvider', 'autoScalingGroup', 'launchTemplate'])
  t.match((await auditOf(app, active.id)).filter((a) => a.action === 'cluster.delete'), [{ actor_id: dev.account.id, details: { force: false, liveContainers: 0 } }])
  t.same(ids((await list(app, dev.headers)).json()), [], 'no longer listed')
  t.same(ids((await list(app, dev.headers, { status: 'deleted' })).json()), [active.id])

  // Deleting it again: nothing to do, a job that is already done.
  const calls = model.log.length
  const again = await remove(app, dev.headers, active.id)
  t.equal(again.statusCode, 202)
  t.equal(again.headers.location, `/v1/jobs/${again.json().job.id}`)
  t.match(again.json(), { cluster: { status: 'deleted' }, job: { kind: 'delete_cluster', state: 'succeeded', progress: 100 } })
  t.not(again.json().job.id, job.id)
  t.match(await readJob(again.json().job.id), { state: 'succeeded' })
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(model.log.length, calls, 'nothing sent to AWS')
  t.equal((await auditOf(app, active.id)).filter((a) => a.action === 'cluster.delete').length, 1, 'not audited twice')
})

t.test('deleteCluster › valid › force=true with live containers: their stop jobs stop the tasks, then the cluster is deleted', async (t) => {
  const model = fleetModel({ drain: 'hold' })
  const { app, readJob, readCluster, untilJob, activeCluster, deleteCluster } = await onAws(t, {}, model)
  const active = await activeCluster({ minSize: 1, maxSize: 2 })
  const containers = await givenContainers(app, active, ['in_use', 'available', 'stopped'], model)
  const live = containers.slice(0, 2)
  const stoppedTask = model.tasks.find((x) => x.taskArn === containers[2]!.task_arn)!
  stoppedTask.status = 'STOPPED'

  const { job } = await deleteCluster(active.id, { force: 'true' })

  const state = async (id: string) => (await app.db.selectFrom('container').select('state').where('id', '=', id).executeTakeFirstOrThrow()).state
  t.ok(await until(async () => (await Promise.all(live.map((c) => state(c.id)))).every((s) => s === 'stopped')), 'the live containers are stopped')
  const stopJobs = await app.db.selectFrom('container_event').select(['container_id', 'job_id']).where('to_state', '=', 'stopped').where('container_id', 'in', live.map((c) => c.id)).execute()
  t.equal(stopJobs.length, 2, 'through a stop job each')
  const jobs = await app.db.selectFrom('job').selectAll().where('id', 'in', stopJobs.map((e) => e.job_id!)).execute()
  t.ok(jobs.every((j) => j.kind === 'stop_container' && j.state === 'succeeded'), 'the stop jobs succeeded')
  const stops = model.received<StopTaskCommandInput>('StopTask')
  t.same(stops.map((s) => s.task).sort(), live.map((c) => c.task_arn).sort(), 'StopTask for each live task, none for the stopped one')
  t.ok(stops.every((s) => s.cluster === active.name))
  t.ok(model.tasks.every((x) => x.status === 'STOPPED'))

  model.terminateInstances(active.name)
  t.ok(await untilJob(job.id, 'succeeded'))
  t.match(await readCluster(active.id), { status: 'deleted', liveContainers: 0 })
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
  t.match((await auditOf(app, active.id)).filter((a) => a.action === 'cluster.delete'), [{ details: { force: true, liveContainers: 2 } }])
  t.match(await readJob(job.id), { state: 'succeeded' })
})

t.test('deleteCluster › valid › on the simulated provider (no AWS): created, active, deleted', async (t) => {
  const { dev, app, readJob, readCluster, row, untilJob, activeCluster, deleteCluster } = await onAws(t, {}, null)
  t.equal(app.config.containers.provider, 'simulated', 'no AWS: the fleet feature wires the simulated provider')
  const active = await activeCluster({ minSize: 2, maxSize: 3 })
  t.match(await readCluster(active.id), { status: 'active', capacityProvider: `${active.name}-capacity`, usage: { instances: 2, desired: 2 } })

  const { job } = await deleteCluster(active.id)

  t.ok(await untilJob(job.id, 'succeeded'))
  t.match(await readJob(job.id), { state: 'succeeded', message: 'deleted' })
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.same((await row(active.id)).steps.deleted, ['scaledToZero', 'ecsCluster', 'capacityProvider', 'autoScalingGroup', 'launchTemplate'])
  t.same(ids((await list(app, dev.headers)).json()), [])
})

t.test('deleteCluster › valid › a cluster whose creation failed with hosts still terminating: deleting it removes what is left', async (t) => {
  const model = fleetModel({ drain: 'hold' })
  model.failPermanently('CreateCluster', 1)
  const { readCluster, row, untilJob, createCluster, startWorker, deleteCluster } = await onAws(t, {}, model)
  const created = await createCluster({ minSize: 1, maxSize: 2 })
  startWorker()
  t.ok(await untilJob(created.job.id, 'failed'))
  t.match(await readCluster(created.cluster.id), { status: 'failed' })

  const { cluster, job } = await deleteCluster(created.cluster.id)

  t.match(cluster, { status: 'deleting' })
  model.terminateInstances()
  t.ok(await untilJob(job.id, 'succeeded'))
  t.match(await readCluster(created.cluster.id), { status: 'deleted' })
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] }, 'the capacity provider, group and launch template are gone')
  t.equal(model.calls('DeleteCluster'), 0, 'no ECS cluster was made: none deleted')
  t.equal(model.calls('UpdateAutoScalingGroup'), 1, 'scaled to zero once')
  t.match((await row(created.cluster.id)).steps, { capacityProvider: `${created.cluster.name}-capacity`, deleted: ['scaledToZero', 'capacityProvider', 'autoScalingGroup', 'launchTemplate'] })
})

t.test('deleteCluster › invalid input › live containers and no force: 409 conflict; nothing changes', async (t) => {
  const { app, model, dev, row, activeCluster } = await onAws(t)
  const active = await activeCluster()
  const containers = await givenContainers(app, active, ['in_use', 'starting'], model)
  const before = model.log.length

  const res = await remove(app, dev.headers, active.id)

  const body = isProblem(t, res, 409, 'conflict')
  t.match(body.detail, /2 containers/)
  t.match(body.detail, /force=true/)
  t.match(await row(active.id), { status: 'active' })
  t.equal((await app.db.selectFrom('job').selectAll().where('kind', 'in', ['delete_cluster', 'stop_container']).execute()).length, 0, 'no job')
  t.equal((await auditOf(app, active.id)).filter((a) => a.action === 'cluster.delete').length, 0)
  const states = await app.db.selectFrom('container').select('state').where('id', 'in', containers.map((c) => c.id)).execute()
  t.same(states.map((s) => s.state).sort(), ['in_use', 'starting'], 'the containers run on')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(model.log.length, before, 'nothing sent to AWS')
  t.ok(model.tasks.every((x) => x.status === 'RUNNING'))
})

t.test('deleteCluster › invalid input › a cluster still being created: 409; a bad force or id: 400', async (t) => {
  const { app, model, region, dev, row, written } = await onShared(t)
  const creating = await givenCluster(app, region, { status: 'creating' })
  const active = await givenCluster(app, region)

  isProblem(t, await remove(app, dev.headers, creating.id), 409, 'conflict')
  t.match(await row(creating.id), { status: 'creating' })
  isProblem(t, await remove(app, dev.headers, active.id, { force: 'maybe' }), 400, 'validation_failed', ['/query/force'])
  isProblem(t, await remove(app, dev.headers, 'not-a-uuid'), 400, 'validation_failed', ['/params/clusterId'])
  t.match(await row(active.id), { status: 'active' })
  t.equal((await written()).jobs, 0, 'no job')
  t.equal(model.log.length, 0)
})

t.test('deleteCluster › non-existing › an unknown id: 404 not_found', async (t) => {
  const { app, model, dev } = await onShared(t)
  isProblem(t, await remove(app, dev.headers, randomUUID()), 404, 'not_found')
  isProblem(t, await remove(app, dev.headers, randomUUID(), { force: 'true' }), 404, 'not_found')
  t.equal(model.log.length, 0)
})

t.test('deleteCluster › insufficient permissions › a user 403, no token 401, a token with only fleet:read 403; nothing changes', async (t) => {
  const { app, model, region, row } = await onShared(t)
  const cluster = await givenCluster(app, region)
  const user = await given(app).signedIn()
  const reader = bearer(await given(app).token({ role: 'developer', scopes: ['fleet:read'] }))

  isProblem(t, await remove(app, user.headers, cluster.id), 403, 'forbidden')
  isProblem(t, await remove(app, {}, cluster.id, { force: 'true' }), 401, 'unauthorized')
  isProblem(t, await remove(app, reader, cluster.id), 403, 'forbidden')
  t.match(await row(cluster.id), { status: 'active', job_id: null }, 'no delete job')
  t.equal((await auditOf(app, cluster.id)).length, 0)
  t.equal(model.log.length, 0)
})

t.test('deleteCluster › faults › a permanent failure at DeleteCapacityProvider: cluster_delete_failed; deleting again resumes without repeating done steps', async (t) => {
  const { model, readJob, readCluster, row, untilJob, activeCluster, deleteCluster } = await onAws(t)
  const active = await activeCluster()
  model.failPermanently('DeleteCapacityProvider', 1)

  const first = await deleteCluster(active.id)

  t.ok(await untilJob(first.job.id, 'failed'))
  const failed = await readJob(first.job.id)
  t.match(failed, { state: 'failed', errorCode: 'cluster_delete_failed', message: /not valid \(fleet-model\).*delete again to resume/ })
  t.match(await readCluster(active.id), { status: 'deleting' })
  t.same((await row(active.id)).steps.deleted, ['scaledToZero', 'ecsCluster'], 'what was done is recorded')
  t.same(model.exists().clusters, [], 'the ECS cluster is gone')
  t.equal(model.exists().capacityProviders.length, 1, 'the capacity provider, group and launch template are left')
  t.equal(model.exists().groups.length, 1)
  t.equal(model.calls('DeleteCapacityProvider'), 1, 'a permanent error is not retried')

  const second = await deleteCluster(active.id)

  t.not(second.job.id, first.job.id)
  t.ok(await untilJob(second.job.id, 'succeeded'))
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
  t.equal(model.calls('UpdateAutoScalingGroup'), 1, 'not scaled to zero again')
  t.equal(model.calls('DeleteCluster'), 1, 'the ECS cluster not deleted again')
  t.equal(model.calls('DeleteCapacityProvider'), 2)
  t.equal(model.calls('DeleteAutoScalingGroup'), 1)
  t.equal(model.calls('DeleteLaunchTemplate'), 1)
  t.match(await readJob(first.job.id), { state: 'failed' }, 'the first job stays failed')
})

t.test('deleteCluster › faults › DeleteCluster and DeleteAutoScalingGroup throttled once each: retried, deleted, each deleted once', async (t) => {
  const { model, readCluster, untilJob, activeCluster, deleteCluster } = await onAws(t)
  const active = await activeCluster()
  model.throttle('DeleteCluster', 1)
  model.throttle('DeleteAutoScalingGroup', 1)

  const { job } = await deleteCluster(active.id)

  t.ok(await untilJob(job.id, 'succeeded', 15_000))
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.equal(model.pendingFaults(), 0)
  t.equal(model.succeeded('DeleteCluster').length, 1)
  t.equal(model.succeeded('DeleteAutoScalingGroup').length, 1)
  t.equal(model.succeeded('UpdateAutoScalingGroup').length, 1, 'scaled to zero once')
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
})

t.test('deleteCluster › faults › hosts that do not drain before the deadline: cluster_delete_timeout; deleting again after they went finishes', async (t) => {
  const model = fleetModel({ drain: 'hold' })
  const { readJob, readCluster, untilJob, activeCluster, deleteCluster } = await onAws(t, { CLUSTER_JOB_TIMEOUT_MS: '1000' }, model)
  const active = await activeCluster()

  const first = await deleteCluster(active.id)

  t.ok(await untilJob(first.job.id, 'failed', 5000))
  t.match(await readJob(first.job.id), { errorCode: 'cluster_delete_timeout' })
  t.same(model.log.filter((c) => c.command.startsWith('Delete')), [], 'nothing deleted while the hosts ran')
  const polls = model.calls('DescribeAutoScalingGroups')
  await new Promise((resolve) => setTimeout(resolve, 200))
  t.equal(model.calls('DescribeAutoScalingGroups'), polls, 'the timed-out job stopped polling')

  model.terminateInstances(active.name)
  const second = await deleteCluster(active.id)
  t.ok(await untilJob(second.job.id, 'succeeded'))
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
})

t.test('deleteCluster › faults › the group was already deleted by hand: "not found" is fine, the rest is deleted', async (t) => {
  const { model, region, readJob, readCluster, activeCluster, deleteCluster } = await onAws(t)
  const active = await activeCluster({ minSize: 0 })
  // Someone removed the group in the console.
  model.group(active.name)!.deleted = true
  t.equal(model.exists(region).groups.length, 0)

  const { job } = await deleteCluster(active.id)

  t.ok(await until(async () => ['succeeded', 'failed'].includes((await readJob(job.id)).state)))
  t.match(await readJob(job.id), { state: 'succeeded' }, `the delete finishes (${JSON.stringify(await readJob(job.id))})`)
  t.match(await readCluster(active.id), { status: 'deleted' })
  t.same(model.exists(), { launchTemplates: [], groups: [], capacityProviders: [], clusters: [] })
})
