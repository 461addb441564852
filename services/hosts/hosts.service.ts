import { createVerify, timingSafeEqual } from 'node:crypto'
import { isIP } from 'node:net'
import type { Kysely, Transaction } from 'kysely'
import { sql } from '../../db/kysely.js'
import type { DB } from '../../db/types.js'
import type { Batcher } from '../batcher.js'
import { UnstorableValue, storable } from '../errors.js'
import { hashToId, newSecret } from '../hashing.js'
import { HandshakeRefused, HostIsLive, MissingInstanceId, MissingRegion, UnknownRegion, WrongHostSecret } from './hosts.errors.js'

export interface HostSettings {
  bootstrapSecret: string | null
  /** PEM certificate AWS signs instance identity documents with (per partition/region). */
  identityCert: string | null
  /** How long after the instance's launch (the document's pendingTime) a first handshake may use its document. */
  identityMaxAgeS: number
  heartbeatIntervalS: number
}

export interface HandshakeInput {
  instanceId?: string
  InstanceID?: string
  region?: string
  ip?: string
  ami?: string
  instanceType?: string
  clusterName?: string
  bootstrapSecret?: string
  identityDocument?: string
  identitySignature?: string
}

export interface HandshakeContext {
  /** The caller's address: the host's with a bootstrap secret when the body names none. */
  remoteIp: string
  /** The host's current secret (X-Host-Secret): what rotates a live host's secret. */
  currentSecret?: string | undefined
  /** The clock, in ms since the epoch. */
  now: number
}

/** Who the handshake says the host is, once the document or the bootstrap secret checked out. */
interface HostClaim {
  instanceId: string
  region: string
  ip: string
  ami: string | null
  instanceType: string | null
  /** The launch the identity document is of (its pendingTime); null with a bootstrap secret. */
  launchedAt: Date | null
}

function sameSecret (given: string, expected: string): boolean {
  return sameHash(hashToId(given), hashToId(expected))
}

function sameHash (a: string, b: string): boolean {
  const x = Buffer.from(a)
  const y = Buffer.from(b)
  return x.length === y.length && timingSafeEqual(x, y)
}

/**
 * What the identity document says, once its signature checks out against AWS's certificate. Its address
 * (privateIp), instance, region and launch are the ones used, whatever the body says; the body's AMI and
 * instance type only fill in what the document lacks.
 */
function verifiedIdentity (settings: HostSettings, document: string, signature: string, input: HandshakeInput): HostClaim {
  if (!settings.identityCert) throw new HandshakeRefused('instance identity documents are not accepted here (AWS_IDENTITY_CERT is not set)')
  const ok = createVerify('RSA-SHA256').update(document).verify(settings.identityCert, signature, 'base64')
  if (!ok) throw new HandshakeRefused('the identity document signature does not verify')
  let parsed: { instanceId?: unknown, region?: unknown, privateIp?: unknown, pendingTime?: unknown, imageId?: unknown, instanceType?: unknown }
  try {
    parsed = JSON.parse(document)
  } catch {
    throw new HandshakeRefused('the identity document is not JSON')
  }
  if (typeof parsed.instanceId !== 'string' || typeof parsed.region !== 'string') throw new HandshakeRefused('the identity document has no instanceId or region')
  if (typeof parsed.privateIp !== 'string' || isIP(parsed.privateIp) === 0) throw new HandshakeRefused('the identity document has no privateIp')
  const launchedAt = typeof parsed.pendingTime === 'string' ? new Date(parsed.pendingTime) : null
  if (!launchedAt || Number.isNaN(launchedAt.getTime())) throw new HandshakeRefused('the identity document has no pendingTime')
  return {
    instanceId: parsed.instanceId,
    region: parsed.region,
    ip: parsed.privateIp,
    ami: typeof parsed.imageId === 'string' ? parsed.imageId : input.ami ?? null,
    instanceType: typeof parsed.instanceType === 'string' ? parsed.instanceType : input.instanceType ?? null,
    launchedAt
  }
}

/** The bootstrap secret authenticates whoever holds it: the instance, region and address are the body's. */
function bootstrapClaim (settings: HostSettings, input: HandshakeInput, remoteIp: string): HostClaim {
  if (!settings.bootstrapSecret) throw new HandshakeRefused('bootstrap secrets are not accepted here (HOST_BOOTSTRAP_SECRET is not set)')
  if (!input.bootstrapSecret || !sameSecret(input.bootstrapSecret, settings.bootstrapSecret)) throw new HandshakeRefused('wrong bootstrap secret')
  const instanceId = input.instanceId ?? input.InstanceID
  if (!instanceId) throw new MissingInstanceId()
  if (!input.region) throw new MissingRegion()
  return { instanceId, region: input.region, ip: input.ip ?? remoteIp, ami: input.ami ?? null, instanceType: input.instanceType ?? null, launchedAt: null }
}

/** A document is good for a first handshake of its launch only while the launch is recent. */
function assertFresh (settings: HostSettings, claim: HostClaim, now: number) {
  if (!claim.launchedAt || now - claim.launchedAt.getTime() <= settings.identityMaxAgeS * 1000) return
  throw new HandshakeRefused(`the identity document is stale: instance ${claim.instanceId} launched at ${claim.launchedAt.toISOString()}, ` +
    `more than ${settings.identityMaxAgeS} s ago (a host that shook hands before presents its current secret in X-Host-Secret)`)
}

/**
 * Whether a handshake may give a known host a new secret: with its current secret, always (whatever the
 * document's age); otherwise the document must be of a newer launch than the one accepted, and the host
 * dead (silent past HOST_DEAD_AFTER_MS): a live host's secret is never replaced without its current one.
 */
function assertMayRotate (settings: HostSettings, known: { secret_hash: string, status: string, launched_at: Date | null }, claim: HostClaim, context: HandshakeContext) {
  if (context.currentSecret !== undefined) {
    if (!sameHash(hashToId(context.currentSecret), known.secret_hash)) throw new WrongHostSecret()
    return
  }
  if (claim.launchedAt) {
    assertFresh(settings, claim, context.now)
    if (known.launched_at && claim.launchedAt.getTime() <= known.launched_at.getTime()) {
      throw new HandshakeRefused(`the identity document of instance ${claim.instanceId} launched at ${claim.launchedAt.toISOString()} was used already ` +
        '(a host that shook hands before presents its current secret in X-Host-Secret)')
    }
  }
  if (known.status !== 'dead') throw new HostIsLive(claim.instanceId)
}

/**
 * A host agent introduces itself. A signed identity document (preferred) or the bootstrap secret
 * authenticates it; the host row is created (201) or, for a known instance, its secret rotated (200) when
 * assertMayRotate allows. The secret is returned once and stored hashed. The known row is locked while it
 * is decided on, so of concurrent handshakes of one instance, one at a time sees the row as the last left it.
 */
export async function handshake (db: Kysely<DB>, settings: HostSettings, input: HandshakeInput, context: HandshakeContext) {
  let claim: HostClaim
  if (input.identityDocument || input.identitySignature) {
    if (!input.identityDocument || !input.identitySignature) throw new HandshakeRefused('identityDocument and identitySignature go together')
    claim = verifiedIdentity(settings, input.identityDocument, input.identitySignature, input)
  } else {
    claim = bootstrapClaim(settings, input, context.remoteIp)
  }
  const region = await db.selectFrom('region').select('code').where('code', '=', claim.region).executeTakeFirst()
  if (!region) throw new UnknownRegion(claim.region)
  const cluster = input.clusterName
    ? await db.selectFrom('cluster').select('id').where('name', '=', input.clusterName).where('region_code', '=', claim.region).executeTakeFirst()
    : undefined
  const secret = newSecret()
  const values = {
    instance_id: claim.instanceId,
    region_code: claim.region,
    cluster_id: cluster?.id ?? null,
    ip: claim.ip,
    ami: claim.ami,
    instance_type: claim.instanceType,
    secret_hash: hashToId(secret),
    status: 'active' as const,
    last_heartbeat_at: sql<Date>`now()`
  }
  const known = (trx: Transaction<DB>) => trx.selectFrom('host').select(['id', 'secret_hash', 'status', 'launched_at'])
    .where('instance_id', '=', claim.instanceId).forUpdate().executeTakeFirst()
  const created = await db.transaction().execute(async (trx) => {
    let row = await known(trx)
    if (!row) {
      assertFresh(settings, claim, context.now)
      // A concurrent first handshake may insert first: then this one is decided on its row, like any other.
      const inserted = await trx.insertInto('host').values({ ...values, launched_at: claim.launchedAt })
        .onConflict((oc) => oc.column('instance_id').doNothing()).returning('id').executeTakeFirst()
      if (inserted) return { id: inserted.id, created: true }
      row = await known(trx)
      if (!row) throw new Error(`host ${claim.instanceId}: neither inserted nor found`)
    }
    assertMayRotate(settings, row, claim, context)
    await trx.updateTable('host').where('id', '=', row.id)
      .set({ ...values, launched_at: sql<Date>`greatest(launched_at, ${claim.launchedAt}::timestamptz)`, updated_at: sql`now()` }).execute()
    return { id: row.id, created: false }
  })
  return { created: created.created, credentials: { hostId: created.id, secret, heartbeatIntervalSeconds: settings.heartbeatIntervalS } }
}

export interface HeartbeatInput {
  instanceType?: string
  totalMemoryKb?: number
  freeMemoryKb?: number
  availableMemoryKb?: number
  dying?: boolean
  InstanceType?: string
  TotalRAMinKB?: number
  FreeRAMinKB?: number
  AvailRAMinKB?: number
  IsDyingHeartbeat?: boolean
}

/** One heartbeat as recordHeartbeats takes it. */
export interface HeartbeatCall {
  hostId: string
  secretHash: string
  instanceType: string | null
  totalKb: number | null
  freeKb: number | null
  availableKb: number | null
  dying: boolean
}

/**
 * Heartbeats of many hosts in one statement that is also the secret check: a row is updated only when its
 * secret's hash matches. Answers, per call, whether it was recorded (false: unknown host or wrong secret,
 * and nothing changed). A host beating twice in one batch is updated once, with the later figures. The
 * rows are locked in id order before the update, so two batches never wait on each other in a cycle.
 */
export async function recordHeartbeats (db: Kysely<DB>, calls: HeartbeatCall[]): Promise<boolean[]> {
  const latest = new Map<string, HeartbeatCall>()
  for (const call of calls) latest.set(`${call.hostId} ${call.secretHash}`, call)
  const beats = [...latest.values()]
  const column = <K extends keyof HeartbeatCall>(key: K) => beats.map((b) => b[key])
  const { rows } = await sql<{ id: string, secret_hash: string }>`
    with beat (id, secret_hash, instance_type, total_kb, free_kb, available_kb, dying) as (
      select * from unnest(${column('hostId')}::uuid[], ${column('secretHash')}::text[], ${column('instanceType')}::text[],
        ${column('totalKb')}::bigint[], ${column('freeKb')}::bigint[], ${column('availableKb')}::bigint[], ${column('dying')}::boolean[])
    ), locked as (
      select h.id from host h join beat b on b.id = h.id and b.secret_hash = h.secret_hash order by h.id for update of h
    )
    update host h set last_heartbeat_at = now(), updated_at = now(), instance_type = coalesce(b.instance_type, h.instance_type),
      memory_total_kb = b.total_kb, memory_free_kb = b.free_kb, memory_available_kb = b.available_kb,
      status = case when b.dying then 'draining' when h.status = 'dead' then 'active' else h.status end
    from beat b
    where h.id = b.id and h.secret_hash = b.secret_hash and h.id in (select id from locked)
    returning h.id, b.secret_hash`.execute(db)
  const recorded = new Set(rows.map((r) => `${r.id} ${r.secret_hash}`))
  return calls.map((call) => recorded.has(`${call.hostId} ${call.secretHash}`))
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i

/**
 * Whether `secret` is host `hostId`'s, before anything else of the request is looked at (the heartbeat's
 * UPDATE checks it again, atomically). `known` keeps hashes that matched: a host beats every few seconds, so
 * its check costs a database read only after its secret changed.
 */
export async function checkHostSecret (db: Kysely<DB>, hostId: string, secret: string | undefined, known: Map<string, string>): Promise<void> {
  if (!secret || !uuidPattern.test(hostId)) throw new WrongHostSecret()
  const given = hashToId(secret)
  if (known.get(hostId) === given) return
  const row = await db.selectFrom('host').select('secret_hash').where('id', '=', hostId).executeTakeFirst()
  const [stored, sent] = [Buffer.from(row?.secret_hash ?? ''), Buffer.from(given)]
  if (stored.length !== sent.length || !timingSafeEqual(stored, sent)) throw new WrongHostSecret()
  if (known.size >= 10_000) known.delete(known.keys().next().value!)
  known.set(hostId, given)
}

/**
 * Records a heartbeat (batched with concurrent ones when `batcher` is given: see recordHeartbeats). A wrong
 * secret or an unknown host changes nothing and is a 401. A dying heartbeat marks the host draining; a dead
 * host that beats again is active.
 */
export async function heartbeat (
  db: Kysely<DB>, hostId: string, secret: string | undefined, input: HeartbeatInput, batcher?: Batcher<HeartbeatCall, boolean>
) {
  if (!secret) throw new WrongHostSecret()
  const call: HeartbeatCall = {
    hostId,
    secretHash: hashToId(secret),
    instanceType: input.instanceType ?? input.InstanceType ?? null,
    totalKb: input.totalMemoryKb ?? input.TotalRAMinKB ?? null,
    freeKb: input.freeMemoryKb ?? input.FreeRAMinKB ?? null,
    availableKb: input.availableMemoryKb ?? input.AvailRAMinKB ?? null,
    dying: input.dying ?? input.IsDyingHeartbeat ?? false
  }
  // A value PostgreSQL would refuse fails alone, before it joins a batch (with other hosts' heartbeats).
  if (![call.instanceType, call.totalKb, call.freeKb, call.availableKb].every(storable)) throw new UnstorableValue()
  const recorded = batcher ? await batcher.submit(call) : (await recordHeartbeats(db, [call]))[0]
  if (!recorded) throw new WrongHostSecret()
}

/**
 * Hosts silent for `deadAfterMs` are dead: their live containers fail with a reason and their client
 * sessions close. A container is the host's when ECS placed it on the host's instance (recorded at start, and
 * what an identity document authenticates); one started without an instance (the simulator, rows from
 * before it was recorded) when it is at the host's address in its region.
 */
export async function reapDeadHosts (db: Kysely<DB>, deadAfterMs: number) {
  const cutoff = new Date(Date.now() - deadAfterMs)
  return db.transaction().execute(async (trx) => {
    const dead = await trx.updateTable('host').set({ status: 'dead', updated_at: sql`now()` })
      .where('status', 'in', ['active', 'draining']).where('last_heartbeat_at', '<', cutoff)
      .returning(['id', 'instance_id', 'ip', 'region_code']).execute()
    let containers = 0
    for (const host of dead) {
      // EC2 reuses addresses: a live host that has this address now keeps the containers found by address.
      const taken = !host.ip || await trx.selectFrom('host').select('id').where('ip', '=', host.ip).where('region_code', '=', host.region_code)
        .where('status', 'in', ['active', 'draining']).where('id', '!=', host.id).executeTakeFirst() !== undefined
      const live = await trx.selectFrom('container').select(['id', 'state'])
        .where('region_code', '=', host.region_code).where('state', 'in', ['starting', 'available', 'in_use'])
        .where((eb) => eb.or([
          eb('host_instance_id', '=', host.instance_id),
          ...(taken ? [] : [eb.and([eb('host_instance_id', 'is', null), eb('host_ip', '=', host.ip)])])
        ]))
        .forUpdate().execute()
      if (live.length === 0) continue
      const ids = live.map((c) => c.id)
      await trx.updateTable('container')
        .set({ state: 'failed', failure_reason: 'its host stopped sending heartbeats', client_connected: false, updated_at: sql`now()` })
        .where('id', 'in', ids).execute()
      await trx.insertInto('container_event')
        .values(live.map((c) => ({ container_id: c.id, from_state: c.state, to_state: 'failed' as const, reason: `host ${host.id} is dead` }))).execute()
      await trx.updateTable('container_session').set({ logoff_at: sql`now()` }).where('container_id', 'in', ids).where('logoff_at', 'is', null).execute()
      containers += live.length
    }
    return { dead: dead.length, containers }
  })
}
