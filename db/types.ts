// Row shapes of every table, as kysely sees them. Generated<T> marks columns with a database default.
import type { ColumnType, Generated, Insertable, Selectable, Updateable } from 'kysely'

type Timestamp = ColumnType<Date, Date | string | undefined, Date | string>

export interface RegionTable {
  code: string
  name: string
  enabled: Generated<boolean>
  latitude: number
  longitude: number
  current_ami: string | null
  sort_order: Generated<number>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface AppTable {
  id: string
  name: string
  description: string
  icon_url: string
  category: string
  /** False: out of the catalog (hidden from public reads, no new containers), its rows and history kept. */
  enabled: Generated<boolean>
  /** The DPI a container of the app starts with when the client asks for none. */
  dpi_default: Generated<number>
  /** Overrides of the plans' session limits for this app (issue 22); null: the plan's. */
  session_limits: ColumnType<SessionLimits | null, string | null | undefined, string | null>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface AppRegionTable {
  app_id: string
  region_code: string
  /** ECS task definition: `family:revision` (pinned) or `family` (the latest active revision at each start). */
  task_definition: string
  warm_pool_target: Generated<number>
  enabled: Generated<boolean>
}

/** The plans that include an app. */
export interface PlanAppTable {
  plan_id: string
  app_id: string
}

export interface DB {
  region: RegionTable
  app: AppTable
  app_region: AppRegionTable
  account: AccountTable
  session: SessionTable
  refresh_token: RefreshTokenTable
  email_token: EmailTokenTable
  audit_event: AuditEventTable
  newsletter_subscription: NewsletterSubscriptionTable
  cluster: ClusterTable
  job: JobTable
  container: ContainerTable
  container_event: ContainerEventTable
  container_session: ContainerSessionTable
  container_grant: ContainerGrantTable
  host: HostTable
  storage_connection: StorageConnectionTable
  plan: PlanTable
  plan_app: PlanAppTable
  billing_customer: BillingCustomerTable
  subscription: SubscriptionTable
  stripe_event: StripeEventTable
  usage_record: UsageRecordTable
  fleet_decision: FleetDecisionTable
  log_upload: LogUploadTable
  idempotency_record: IdempotencyRecordTable
  maintenance: MaintenanceTable
  partner: PartnerTable
  partner_api_key: PartnerApiKeyTable
  warm_pool: WarmPoolTable
  warm_pool_schedule: WarmPoolScheduleTable
  personal_access_token: PersonalAccessTokenTable
}

export type Region = Selectable<RegionTable>
export type NewRegion = Insertable<RegionTable>
export type RegionUpdate = Updateable<RegionTable>
export type App = Selectable<AppTable>
export type NewApp = Insertable<AppTable>
export type AppUpdate = Updateable<AppTable>
export type AppRegion = Selectable<AppRegionTable>

export type Role = 'user' | 'developer' | 'admin'

export interface AccountTable {
  id: Generated<string>
  email: string
  name: string
  password_hash: string | null
  role: Generated<Role>
  email_verified_at: Date | null
  pending_email: string | null
  google_subject: string | null
  disabled_at: Date | null
  deleted_at: Date | null
  last_sign_in_at: Date | null
  partner_id: string | null
  /** Optional fields of the sign-up form, for operators (issue 23). */
  sign_up_reason: string | null
  referral_code: string | null
  created_at: Timestamp
  updated_at: Timestamp
}

export interface SessionTable {
  id: Generated<string>
  account_id: string
  ip: string | null
  user_agent: string | null
  created_at: Timestamp
  last_used_at: Timestamp
  expires_at: Date
  revoked_at: Date | null
  revoked_reason: string | null
}

export interface RefreshTokenTable {
  token_hash: string
  session_id: string
  created_at: Timestamp
  expires_at: Date
  used_at: Date | null
}

export type EmailTokenPurpose = 'verify_email' | 'change_email' | 'reset_password' | 'newsletter'

export interface EmailTokenTable {
  token_hash: string
  purpose: EmailTokenPurpose
  account_id: string | null
  email: string
  created_at: Timestamp
  expires_at: Date
  used_at: Date | null
}

export interface AuditEventTable {
  id: Generated<string>
  at: Timestamp
  action: string
  actor_id: string | null
  target_type: string | null
  target_id: string | null
  ip: string | null
  user_agent: string | null
  details: ColumnType<Record<string, unknown>, string | undefined, never>
}

export interface NewsletterSubscriptionTable {
  email: string
  status: Generated<'pending' | 'subscribed' | 'unsubscribed'>
  created_at: Timestamp
  confirmed_at: Date | null
  unsubscribed_at: Date | null
}

export type Account = Selectable<AccountTable>
export type Session = Selectable<SessionTable>

export type ContainerState = 'creating' | 'starting' | 'available' | 'in_use' | 'stopping' | 'stopped' | 'failed'
export type JobState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled'

export type ClusterStatus = 'creating' | 'active' | 'deleting' | 'deleted' | 'failed'

export interface ClusterTable {
  id: Generated<string>
  region_code: string
  name: string
  status: Generated<ClusterStatus>
  capacity: Generated<number>
  capacity_provider: string | null
  instance_type: string | null
  ami: string | null
  min_size: Generated<number>
  max_size: Generated<number>
  steps: ColumnType<ClusterSteps, string | undefined, string>
  usage: ColumnType<ClusterUsage | null, string | null | undefined, string | null>
  job_id: string | null
  created_at: Timestamp
  updated_at: Timestamp
}

/** What a cluster job has done: the ids of what it made, and the teardown steps done. */
export interface ClusterSteps {
  launchTemplateId?: string
  /** The launch template version the group launches (a number: a roll moves it once its refresh succeeds). */
  launchTemplateVersion?: string
  autoScalingGroupArn?: string
  capacityProvider?: string
  ecsCluster?: boolean
  deleted?: string[]
}

export interface ClusterUsage { tasks: number, instances: number, cpuLeft: number, memoryLeftMb: number, desired: number, at: string }
export type Cluster = Selectable<ClusterTable>

export interface JobTable {
  id: Generated<string>
  kind: 'start_container' | 'stop_container' | 'upload_log' | 'create_cluster' | 'delete_cluster' | 'roll_ami' | 'roll_cluster'
  parent_id: string | null
  owner_id: string | null
  state: Generated<JobState>
  progress: Generated<number>
  message: string | null
  result: ColumnType<Record<string, unknown> | null, string | null | undefined, string | null>
  error_code: string | null
  deadline_at: Date | null
  needs_enqueue: Generated<boolean>
  created_at: Timestamp
  updated_at: Timestamp
}

export interface ContainerTable {
  id: Generated<string>
  user_id: string | null
  app_id: string
  region_code: string
  cluster_id: string | null
  task_arn: string | null
  state: ContainerState
  failure_reason: string | null
  host_ip: string | null
  /** The EC2 instance ECS placed the task on (the AWS provider); null on the simulator. */
  host_instance_id: string | null
  port_32262: number | null
  port_32263: number | null
  port_32273: number | null
  aes_key: string
  secret_hash: string
  dpi: Generated<number>
  use_stun: Generated<boolean>
  last_ping_at: Date | null
  assigned_at: Date | null
  start_job_id: string | null
  storage_mounts: Generated<string[]>
  client_connected: Generated<boolean>
  running_at: Date | null
  /** When the session will end and why, once its client was warned (the session-limits pass); else null. */
  ends_at: Date | null
  ending_reason: SessionEndingReason | null
  /** The last input of the connected client, as the container's pings report it. */
  last_input_at: Date | null
  /** When a client last connected or left (client_connected changed). */
  client_changed_at: Date | null
  /** When the maximum duration ends (set by the session's first limits pass; extensions move it). */
  max_ends_at: Date | null
  /** When a limit ended the session: its usage counts up to then. */
  session_ended_at: Date | null
  created_at: Timestamp
  updated_at: Timestamp
}

export type SessionEndingReason = 'max_duration' | 'disconnected' | 'idle'

/** Session limits in seconds (a plan's, or an app's overrides); a missing one is not set here. */
export interface SessionLimits {
  maxSessionSeconds?: number | null
  disconnectTimeoutSeconds?: number | null
  idleTimeoutSeconds?: number | null
  /** How far a user may extend the maximum duration in all; 0: no extension. */
  maxExtensionSeconds?: number | null
}

export interface ContainerGrantTable {
  id: Generated<string>
  container_id: string
  user_id: string
  created_at: Date
  expires_at: Date
  revoked_at: Date | null
}
export type ContainerGrant = Selectable<ContainerGrantTable>

export interface ContainerSessionTable {
  id: Generated<string>
  container_id: string
  user_id: string | null
  logon_at: Generated<Date>
  logoff_at: Date | null
}

export interface ContainerEventTable {
  id: Generated<string>
  container_id: string
  from_state: ContainerState | null
  to_state: ContainerState
  job_id: string | null
  reason: string | null
  kind: Generated<ContainerEventKind>
  /** The end a session event announces. */
  ends_at: Date | null
  at: Timestamp
}

export type ContainerEventKind = 'state' | 'session_warning' | 'session_extended' | 'session_ended'

export interface IdempotencyRecordTable {
  user_id: string
  key: string
  request_hash: string
  status: number | null
  body: ColumnType<unknown, string | null | undefined, string | null>
  headers: ColumnType<Record<string, string> | null, string | null | undefined, string | null>
  created_at: Timestamp
}

export type Container = Selectable<ContainerTable>
export type Job = Selectable<JobTable>

/** `scope` is `global` or a region code. */
export interface MaintenanceTable {
  scope: string
  message: string
  owner_id: string | null
  starts_at: Timestamp
  ends_at: Date
}

export type HostStatus = 'active' | 'draining' | 'dead'

export interface HostTable {
  id: Generated<string>
  instance_id: string
  region_code: string
  cluster_id: string | null
  ip: string | null
  ami: string | null
  instance_type: string | null
  secret_hash: string
  /** The launch (identity document's pendingTime) whose document was accepted; null with a bootstrap secret. */
  launched_at: Date | null
  status: Generated<HostStatus>
  memory_total_kb: ColumnType<string | null, number | null | undefined, number | null>
  memory_free_kb: ColumnType<string | null, number | null | undefined, number | null>
  memory_available_kb: ColumnType<string | null, number | null | undefined, number | null>
  last_heartbeat_at: Date | null
  created_at: Timestamp
  updated_at: Timestamp
}
export type Host = Selectable<HostTable>

export interface LogUploadTable {
  id: Generated<string>
  user_id: string | null
  container_id: string | null
  sender: 'client' | 'server'
  object_key: string
  bytes: number
  body: Buffer | null
  status: Generated<'pending' | 'stored' | 'failed'>
  job_id: string | null
  created_at: Timestamp
  stored_at: Date | null
}
export type LogUpload = Selectable<LogUploadTable>

export interface FleetDecisionTable {
  id: Generated<string>
  region_code: string
  action: 'create_cluster' | 'delete_cluster' | 'cannot_create'
  reason: string
  cluster_id: string | null
  at: Generated<Date>
}

export interface Entitlements { concurrentContainers: number, hoursPerMonth: number | null, regions: string[] | null, maxDpi: number }

export interface PlanTable {
  id: string
  name: string
  amount: number
  currency: string
  interval: 'month' | 'year'
  trial_days: Generated<number>
  entitlements: ColumnType<Entitlements, string, string>
  session_limits: ColumnType<SessionLimits | null, string | null | undefined, string | null>
  billed_by_hour: Generated<boolean>
  stripe_product_id: string | null
  stripe_price_id: string | null
  active: Generated<boolean>
  sort_order: Generated<number>
  updated_at: Timestamp
}
export type Plan = Selectable<PlanTable>

export interface BillingCustomerTable {
  user_id: string
  stripe_customer_id: string
  created_at: Timestamp
  deleted_at: Date | null
}

export type SubscriptionStatus = 'incomplete' | 'incomplete_expired' | 'trialing' | 'active' | 'past_due' | 'canceled' | 'unpaid' | 'paused'

export interface SubscriptionTable {
  user_id: string
  stripe_subscription_id: string
  plan_id: string | null
  status: SubscriptionStatus
  trial_end: Date | null
  current_period_start: Date | null
  current_period_end: Date | null
  cancel_at_period_end: Generated<boolean>
  past_due_since: Date | null
  event_created: ColumnType<string, number | undefined, number>
  updated_at: Timestamp
}
export type Subscription = Selectable<SubscriptionTable>

export interface StripeEventTable {
  id: string
  type: string
  payload: ColumnType<Record<string, unknown>, string, string>
  received_at: Timestamp
  processed_at: Date | null
  error: string | null
}

export interface UsageRecordTable {
  container_id: string
  user_id: string
  seconds: number
  ended_at: Date
  reported_at: Date | null
  /** The user's plan when the record was written (a trigger fills it from subscription). */
  plan_id: Generated<string | null>
}

export interface StorageConnectionTable {
  user_id: string
  provider: string
  account_email: string | null
  access_token: string
  refresh_token: string | null
  key_id: string
  expires_at: Date | null
  status: Generated<'connected' | 'needs_reauth'>
  connected_at: Timestamp
  updated_at: Timestamp
}
export type StorageConnection = Selectable<StorageConnectionTable>

export interface PartnerTable {
  id: Generated<string>
  name: string
  created_at: Timestamp
}
export type Partner = Selectable<PartnerTable>

export type PartnerScope = 'partner:read'

/** `key_hash`: sha256 (base64url) of the whole key; the key itself is shown once, at creation. */
export interface PartnerApiKeyTable {
  id: Generated<string>
  partner_id: string
  name: string
  prefix: string
  key_hash: string
  scopes: PartnerScope[]
  expires_at: Date
  last_used_at: Date | null
  created_at: Timestamp
  revoked_at: Date | null
}
export type PartnerApiKey = Selectable<PartnerApiKeyTable>

export type WarmPoolDecision = 'steady' | 'grow' | 'shrink' | 'rebalance' | 'paused' | 'closed'

/** A warm pool's own settings and its last reconciliation pass (one row per app and region, made on first use). */
export interface WarmPoolTable {
  app_id: string
  region_code: string
  paused: Generated<boolean>
  paused_at: Date | null
  /** Null: WARM_POOL_MAX_AGE_S applies; 0: no maximum. */
  max_age_seconds: number | null
  /** A forced recycle: the warm containers made before it are replaced as if past the maximum age. */
  recycle_before: Date | null
  last_pass_at: Date | null
  last_decision: WarmPoolDecision | null
  last_desired: number | null
  last_started: number | null
  last_stopped: number | null
  last_reason: string | null
  updated_at: Timestamp
}
export type WarmPool = Selectable<WarmPoolTable>

export type Weekday = 'mon' | 'tue' | 'wed' | 'thu' | 'fri' | 'sat' | 'sun'

/** Minutes since local midnight in `time_zone`; an end at or before the start runs into the next day. */
export interface WarmPoolScheduleTable {
  id: Generated<string>
  app_id: string
  region_code: string
  days: Weekday[]
  start_minute: number
  end_minute: number
  time_zone: string
  desired: number
  name: string | null
  created_by: string | null
  created_at: Timestamp
}
export type WarmPoolSchedule = Selectable<WarmPoolScheduleTable>
/** A user's own API credential (`frl_pat_…`): only the hash of the token is kept. */
export interface PersonalAccessTokenTable {
  id: Generated<string>
  account_id: string
  name: string
  prefix: string
  token_hash: string
  scopes: string[]
  read_only: Generated<boolean>
  expires_at: Date
  last_used_at: Date | null
  /** The last use written to the audit trail (the first use of each hour is). */
  use_audited_at: Date | null
  created_at: Timestamp
  revoked_at: Date | null
}
export type PersonalAccessToken = Selectable<PersonalAccessTokenTable>
