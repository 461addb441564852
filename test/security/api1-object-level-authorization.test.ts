// OWASP API1 (broken object-level authorization), walked from the spec: every operation that names an
// object (a path parameter, or a query or header parameter holding an id) is tried by caller B with caller A's
// object, for every kind of object a caller owns (containers, jobs, sessions, logs, storage connections,
// containers' and hosts' own records, a partner's users). B gets the same answer as for an object that does
// not exist (404), or the 401/403 the spec declares where the id is the credential's own; never A's data, and
// A's rows are untouched. Operations whose ids are not owned by a caller are listed with the reason; a new
// id-bearing operation in neither list fails the test until someone decides which it is.
import { randomBytes, randomUUID } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'
import { isProblem, operations, validRequest, type WalkedOperation } from './spec-walk.js'

/** An operation names an object when a path parameter, or a uuid in the query or a header, says which. */
const namesAnObject = (op: WalkedOperation) => op.params.some((p) => p.in === 'path' || p.schema.format === 'uuid')

/** Ids that belong to no caller: who may use them is a question of scope (api5-function-level-authorization). */
const notOwned: Record<string, string> = {
  getApp: 'public catalog: every app is readable by anyone',
  updateRegion: 'shared catalog, scope catalog:write (operators)',
  getAdminApp: 'shared catalog, scope catalog:write (operators)',
  updateApp: 'shared catalog, scope catalog:write (operators)',
  setAppRegion: 'shared catalog, scope catalog:write (operators)',
  updateUser: 'scope users:write: an operator acts on any account by design',
  setWarmPoolTarget: 'shared infrastructure (app × region pool), scope fleet:write',
  updateWarmPool: 'shared infrastructure (app × region pool), scope fleet:write',
  recycleWarmPool: 'shared infrastructure (app × region pool), scope fleet:write',
  listWarmPoolSchedules: 'shared infrastructure (a pool\'s schedules), scope fleet:read',
  createWarmPoolSchedule: 'shared infrastructure (a pool\'s schedules), scope fleet:write',
  deleteWarmPoolSchedule: 'shared infrastructure (a pool\'s schedules), scope fleet:write',
  getCluster: 'shared infrastructure, scope fleet:read',
  updateCluster: 'shared infrastructure, scope fleet:write',
  deleteCluster: 'shared infrastructure, scope fleet:write',
  rollAmi: 'shared infrastructure (a region\'s AMI), scope fleet:write',
  listPartnerKeys: 'scope admin: operators manage every partner\'s keys',
  createPartnerKey: 'scope admin',
  revokePartnerKey: 'scope admin',
  listLogs: 'scope admin: filters by any user or container by design',
  listAuditEvents: 'scope admin: filters by any actor by design',
  listPersonalTokens: 'scope users:read: operators see every account\'s tokens by design',
  revokePersonalToken: 'scope users:write: operators revoke any account\'s token by design'
}

type Caller = 'user' | 'container' | 'host' | 'partner'
interface Case {
  /** Who B is: a signed-in user, a container (its secret), a host (its secret) or a partner (its key). */
  as: Caller
  /** A's ids, by parameter name. */
  ids: () => Record<string, string>
  /** What B may get: 404 (existence not revealed), or the spec's 401/403 where the id is the credential's own. */
  expect: number[]
}

t.test('security › object-level authorization › B never reaches A\'s objects through any id-bearing operation', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fractal-api1-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const bootstrapSecret = 'api1-bootstrap-secret-0123456789'
  const app = await build(t, {
    RATE_LIMIT_ENABLED: 'false',
    DATA_DIR: dataDir,
    HOST_BOOTSTRAP_SECRET: bootstrapSecret,
    // A configured provider, so that B's 404 is about the connection, not an unknown provider.
    STORAGE_GOOGLE_DRIVE_CLIENT_ID: 'api1-client',
    STORAGE_GOOGLE_DRIVE_CLIENT_SECRET: 'api1-secret'
  })
  const g = given(app)

  // ---- A's objects, each made the way a caller makes it ----------------------------------------------------
  const a = await g.assignedContainer()
  const b = await g.assignedContainer()
  const aContainer = a.container.id as string
  const aSecret = a.warm.secret
  const aSession = (await app.db.selectFrom('session').select('id').where('account_id', '=', a.user.account.id).executeTakeFirstOrThrow()).id
  // A start job: another app, no warm container (the job waits: no worker runs here).
  const cold = await g.offer()
  const assigned = await app.inject({ method: 'POST', url: '/v1/containers', payload: { app: cold.app }, headers: { ...a.user.headers, 'idempotency-key': randomUUID() } })
  t.equal(assigned.statusCode, 202, 'A\'s second container is starting: a job')
  const aJob = assigned.json().job.id as string
  const uploaded = await app.inject({ method: 'POST', url: `/v1/logs?sender=client&containerId=${aContainer}`, payload: 'A\'s private log line\n', headers: { ...a.user.headers, 'content-type': 'text/plain' } })
  t.equal(uploaded.statusCode, 202, 'A uploaded a log')
  const aLog = uploaded.json().id as string
  const granted = await app.inject({ method: 'POST', url: `/v1/containers/${aContainer}/grants`, headers: a.user.headers })
  t.equal(granted.statusCode, 201, 'A holds a connection grant')
  const aGrant = granted.json().id as string
  await app.db.insertInto('storage_connection').values({ user_id: a.user.account.id, provider: 'google_drive', account_email: 'a@drive.example.test', access_token: 'sealed', key_id: 'k1' }).execute()
  const handshake = async () => (await app.inject({ method: 'POST', url: '/v1/hosts/handshake', payload: { instanceId: `i-${randomBytes(8).toString('hex')}`, region: a.offer.region, bootstrapSecret } })).json() as { hostId: string, secret: string }
  const aHost = await handshake()
  const bHost = await handshake()
  const f = partners(app)
  const aPartner = await f.withKey()
  const bPartner = await f.withKey()
  const aMember = await f.member(aPartner.partner.id)
  const aTokenRes = await app.inject({ method: 'POST', url: '/v1/users/me/tokens', payload: { name: 'A\'s script', scopes: ['account'] }, headers: a.user.headers })
  t.equal(aTokenRes.statusCode, 201, 'A made a personal access token')
  const aToken = aTokenRes.json().id as string

  const credentials: Record<Caller, Record<string, string>> = {
    user: b.user.headers,
    container: { 'x-container-id': b.container.id, 'x-container-secret': b.warm.secret },
    host: { 'x-host-secret': bHost.secret },
    partner: bPartner.headers
  }

  const owned: Record<string, Case> = {
    getContainer: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    updateContainer: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    stopContainer: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    getJob: { as: 'user', ids: () => ({ jobId: aJob }), expect: [404] },
    streamJobEvents: { as: 'user', ids: () => ({ jobId: aJob }), expect: [404] },
    cancelJob: { as: 'user', ids: () => ({ jobId: aJob }), expect: [404] },
    revokeMySession: { as: 'user', ids: () => ({ sessionId: aSession }), expect: [404] },
    revokeMyPersonalToken: { as: 'user', ids: () => ({ tokenId: aToken }), expect: [404] },
    getLogContent: { as: 'user', ids: () => ({ logId: aLog }), expect: [404] },
    deleteStorageConnection: { as: 'user', ids: () => ({ provider: 'google_drive' }), expect: [404] },
    // B's log must not be filed under A's container.
    uploadLog: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    // Another user's containers are an admin's filter: 403 (the spec's AdminOnly), whoever owns them.
    listContainers: { as: 'user', ids: () => ({ user: a.user.account.id, all: 'true' }), expect: [403] },
    // B's own container secret with A's container id: the secret is not A's (the spec's 401/403).
    shutdownContainer: { as: 'container', ids: () => ({ containerId: aContainer }), expect: [401, 403] },
    pingContainer: { as: 'container', ids: () => ({ containerId: aContainer }), expect: [401, 403] },
    getProtocolInfo: { as: 'container', ids: () => ({ containerId: aContainer }), expect: [401, 403] },
    hostHeartbeat: { as: 'host', ids: () => ({ hostId: aHost.hostId }), expect: [401] },
    extendContainerSession: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    streamContainerEvents: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    createConnectionGrant: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    revokeConnectionGrants: { as: 'user', ids: () => ({ containerId: aContainer }), expect: [404] },
    revokeConnectionGrant: { as: 'user', ids: () => ({ containerId: aContainer, grantId: aGrant }), expect: [404] },
    // B's host secret with A's host id: not A's credential.
    introspectConnectionGrant: { as: 'host', ids: () => ({ hostId: aHost.hostId }), expect: [401] },
    getPartnerUsage: { as: 'partner', ids: () => ({ user: aMember.id }), expect: [404] },
    listPartnerContainers: { as: 'partner', ids: () => ({ user: aMember.id }), expect: [404] }
  }

  const idBearing = operations.filter(namesAnObject).map((op) => op.operationId)
  t.same(idBearing.filter((id) => !(id in owned) && !(id in notOwned)), [], 'every id-bearing operation is classified (add it to `owned` with a fixture, or to `notOwned` with the reason)')
  t.same([...Object.keys(owned), ...Object.keys(notOwned)].filter((id) => !idBearing.includes(id)), [], 'no stale entry')

  // ---- A's rows before ---------------------------------------------------------------------------------------
  const snapshot = async () => ({
    container: await app.db.selectFrom('container').select(['id', 'state', 'user_id', 'last_ping_at']).where('user_id', '=', a.user.account.id).orderBy('id').execute(),
    job: await app.db.selectFrom('job').select(['id', 'state', 'owner_id']).where('id', '=', aJob).execute(),
    session: await app.db.selectFrom('session').select(['id', 'revoked_at']).where('account_id', '=', a.user.account.id).execute(),
    token: await app.db.selectFrom('personal_access_token').select(['id', 'revoked_at']).where('account_id', '=', a.user.account.id).execute(),
    storage: await app.db.selectFrom('storage_connection').select(['provider', 'status']).where('user_id', '=', a.user.account.id).execute(),
    host: await app.db.selectFrom('host').select(['id', 'last_heartbeat_at', 'status']).where('id', '=', aHost.hostId).execute(),
    logs: await app.db.selectFrom('log_upload').select(['id', 'user_id']).where('container_id', '=', aContainer).execute()
  })
  const before = await snapshot()
  // What of A's a leak would show (ids B asked for are echoed in a 404's detail, and are not a leak).
  const aData = [a.user.account.email, a.user.account.id, aSecret, a.warm.aes_key, a.warm.task_arn!, aMember.email, 'a@drive.example.test', 'A\'s private log line']

  // ---- B tries --------------------------------------------------------------------------------------------
  const wrong: string[] = []
  for (const [operationId, c] of Object.entries(owned)) {
    const op = operations.find((o) => o.operationId === operationId)!
    const ids = c.ids()
    const request = validRequest(op, ids)
    const res = await app.inject({ ...request, headers: { ...request.headers, ...credentials[c.as] } })
    const asked = Object.values(ids)
    const leaked = aData.filter((d) => !asked.includes(d) && res.body.includes(d))
    if (!c.expect.includes(res.statusCode) || !isProblem(res)) wrong.push(`${operationId}: ${res.statusCode} ${res.body.slice(0, 160)}`)
    if (!c.expect.some((s) => op.statuses.has(String(s)))) wrong.push(`${operationId}: the spec declares none of ${c.expect.join('/')}`)
    if (res.statusCode === 404 && /no .*provider/i.test(res.json().detail)) wrong.push(`${operationId}: 404 for another reason (${res.json().detail})`)
    if (leaked.length > 0) wrong.push(`${operationId} leaks ${leaked.join(', ')}`)
  }
  t.same(wrong, [], `B with A's ids: ${Object.keys(owned).join(', ')}`)
  t.same(await snapshot(), before, 'A\'s container, job, session, storage connection, host and logs are as they were')

  // ---- A still reaches them (the ids were real) ------------------------------------------------------------
  const get = (url: string, headers: Record<string, string>) => app.inject({ method: 'GET', url, headers })
  t.equal((await get(`/v1/containers/${aContainer}`, a.user.headers)).statusCode, 200, 'A reads A\'s container')
  t.equal((await get(`/v1/jobs/${aJob}`, a.user.headers)).statusCode, 200, 'A reads A\'s job')
  t.not((await get(`/v1/logs/${aLog}/content`, a.user.headers)).statusCode, 404, 'A\'s log is there for A')
  t.ok((await get('/v1/users/me/sessions', a.user.headers)).json().items.some((s: { id: string }) => s.id === aSession), 'A lists A\'s session')
  t.match((await get('/v1/storage/connections', a.user.headers)).json(), { items: [{ provider: 'google_drive' }] }, 'A lists A\'s connection')
  t.equal((await get(`/v1/containers/${aContainer}/protocol-info`, { 'x-container-secret': aSecret })).statusCode, 200, 'A\'s container reads its own protocol info')
  t.equal((await app.inject({ method: 'POST', url: `/v1/hosts/${aHost.hostId}/heartbeats`, payload: { totalMemoryKb: 1, freeMemoryKb: 1, availableMemoryKb: 1, dying: false }, headers: { 'x-host-secret': aHost.secret } })).statusCode, 204, 'A\'s host beats')
  t.equal((await get(`/v1/partner/usage?user=${aMember.id}`, aPartner.headers)).statusCode, 200, 'partner A reads its member\'s usage')
})
