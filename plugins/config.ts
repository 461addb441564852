import { createRequire } from 'node:module'
import { isAbsolute, join, resolve } from 'node:path'
import type { Static } from '@sinclair/typebox'
import { Ajv } from 'ajv'
import envSchema from 'env-schema'
import fp from 'fastify-plugin'

// TypeBox through its CommonJS build: the ES module build is ~200 files, each a round trip through the loader
// hooks under tsx (~0.2 s of CPU per test process); the CommonJS one loads in-thread. The same API and types.
const { Type } = createRequire(import.meta.url)('@sinclair/typebox') as typeof import('@sinclair/typebox')

// The environment, as a schema. The Config type below is derived from it; nothing restates it.
const Enum = <T extends string>(values: readonly T[], def: T) => Type.Unsafe<T>({ type: 'string', enum: values, default: def })

export const EnvSchema = Type.Object({
  NODE_ENV: Enum(['development', 'production', 'test'], 'development'),
  HOST: Type.String({ default: '127.0.0.1', minLength: 1 }),
  PORT: Type.Integer({ default: 3000, minimum: 0, maximum: 65535 }),
  LOG_LEVEL: Enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], 'info'),
  PUBLIC_URL: Type.Optional(Type.String({ format: 'uri' })),
  DATA_DIR: Type.String({ default: './.data' }),
  DATABASE_URL: Type.Optional(Type.String({ pattern: '^postgres(ql)?://' })),
  DATABASE_POOL_MAX: Type.Integer({ default: 10, minimum: 1, maximum: 200 }),
  DATABASE_STATEMENT_TIMEOUT_MS: Type.Integer({ default: 30000, minimum: 0, maximum: 3600000 }),
  DATABASE_AUTO_MIGRATE: Type.Optional(Type.Boolean()),
  DATABASE_SEED: Type.Optional(Type.Boolean()),
  // The warm-pool targets a seeded catalog gets: as db/seed-data.ts lists them (96 containers), or one per
  // app in the first region (7). Default: small with the simulated cloud, where nobody uses the 96.
  DATABASE_SEED_WARM_POOLS: Type.Optional(Type.Unsafe<'full' | 'small'>({ type: 'string', enum: ['full', 'small'] })),
  REDIS_URL: Type.Optional(Type.String({ pattern: '^rediss?://' })),
  REDIS_PREFIX: Type.String({ default: 'fractal:', pattern: '^[A-Za-z0-9:_-]*$' }),
  JWT_PRIVATE_KEY: Type.Optional(Type.String({ minLength: 1 })),
  JWT_PUBLIC_KEY: Type.Optional(Type.String({ minLength: 1 })),
  JWT_PREVIOUS_PUBLIC_KEYS: Type.String({ default: '', pattern: '^$|-----BEGIN PUBLIC KEY-----' }),
  JWT_ISSUER: Type.String({ default: 'https://api.fractal.co' }),
  JWT_AUDIENCE: Type.String({ default: 'fractal' }),
  ACCESS_TOKEN_TTL: Type.Integer({ default: 900, minimum: 60, maximum: 86400 }),
  CORS_ORIGINS: Type.String({ default: '' }),
  TRUST_PROXY: Type.String({ default: '' }),
  RATE_LIMIT_ENABLED: Type.Boolean({ default: true }),
  RATE_LIMIT_FAIL_CLOSED: Type.Boolean({ default: true }),
  ORIGIN_CACHE_TTL_MS: Type.Integer({ default: 5000, minimum: 0, maximum: 300000 }),
  SHARED_CACHE_TTL_MS: Type.Integer({ default: 5000, minimum: 0, maximum: 300000 }),
  CACHE_PURGER: Enum(['none', 'varnish', 'fastly', 'cloudflare'], 'none'),
  VARNISH_PURGE_URLS: Type.String({ default: '' }),
  FASTLY_API_URL: Type.String({ default: 'https://api.fastly.com', format: 'uri' }),
  FASTLY_API_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  FASTLY_SERVICE_ID: Type.Optional(Type.String({ minLength: 1 })),
  CLOUDFLARE_API_URL: Type.String({ default: 'https://api.cloudflare.com/client/v4', format: 'uri' }),
  CLOUDFLARE_API_TOKEN: Type.Optional(Type.String({ minLength: 1 })),
  CLOUDFLARE_ZONE_ID: Type.Optional(Type.String({ minLength: 1 })),
  CACHE_PURGE_TIMEOUT_MS: Type.Integer({ default: 10000, minimum: 100, maximum: 60000 }),
  BODY_LIMIT: Type.Integer({ default: 1048576, minimum: 1024 }),
  REQUEST_TIMEOUT_MS: Type.Integer({ default: 30000, minimum: 1000 }),
  SHUTDOWN_GRACE_MS: Type.Integer({ default: 10000, minimum: 0 }),
  WORKER_CONCURRENCY: Type.Integer({ default: 4, minimum: 1, maximum: 100 }),
  QUEUE_STALL_INTERVAL_MS: Type.Integer({ default: 10000, minimum: 500, maximum: 600000 }),
  QUEUE_RETRY_BACKOFF_MS: Type.Integer({ default: 1000, minimum: 10, maximum: 600000 }),
  WORKER_METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  METRICS_TOKEN: Type.Optional(Type.String({ minLength: 32, pattern: '^\\S+$' })),
  METRICS_PORT: Type.Optional(Type.Integer({ minimum: 0, maximum: 65535 })),
  EVENT_STREAMS_PER_USER: Type.Integer({ default: 5, minimum: 1, maximum: 1000 }),
  EVENT_STREAMS_PER_PROCESS: Type.Integer({ default: 1000, minimum: 1, maximum: 100000 }),
  JOB_EVENTS_RESYNC_MS: Type.Integer({ default: 20000, minimum: 100, maximum: 600000 }),
  OTEL_EXPORTER_OTLP_ENDPOINT: Type.Optional(Type.String({ format: 'uri' })),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: Type.Optional(Type.String({ format: 'uri' })),
  OTEL_SERVICE_NAME: Type.Optional(Type.String({ minLength: 1 })),
  OTEL_SDK_DISABLED: Type.Boolean({ default: false }),
  // The client web app, the base of the links in mails (its /verify-email, /password-reset/confirm, ... pages).
  // Unset: this server's own address (http://HOST:PORT), which serves no such page: embedded mode logs each
  // mail with the API request its link's page would make (plugins/mail.ts).
  APP_URL: Type.Optional(Type.String({ format: 'uri' })),
  SMTP_URL: Type.Optional(Type.String({ pattern: '^smtps?://' })),
  MAIL_FROM: Type.String({ default: 'Fractal <no-reply@fractal.co>', minLength: 3 }),
  MAIL_MAX_PER_ADDRESS_PER_HOUR: Type.Integer({ default: 20, minimum: 1, maximum: 10000 }),
  REFRESH_TOKEN_TTL_DAYS: Type.Integer({ default: 30, minimum: 1, maximum: 365 }),
  PASSWORD_MIN_LENGTH: Type.Integer({ default: 10, minimum: 10, maximum: 128 }),
  SIGN_IN_MAX_FAILURES: Type.Integer({ default: 10, minimum: 1 }),
  PAT_MAX_TTL_DAYS: Type.Integer({ default: 90, minimum: 1, maximum: 366, description: 'The longest a personal access token may live, in days (docs/api-tokens.md).' }),
  PAT_MAX_PER_ACCOUNT: Type.Integer({ default: 50, minimum: 1, maximum: 1000, description: 'Live (neither revoked nor expired) personal access tokens one account may hold.' }),
  GOOGLE_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  GOOGLE_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  GOOGLE_ISSUER: Type.String({ default: 'https://accounts.google.com', format: 'uri' }),
  GOOGLE_TOKEN_URL: Type.String({ default: 'https://oauth2.googleapis.com/token', format: 'uri' }),
  GOOGLE_JWKS_URL: Type.String({ default: 'https://www.googleapis.com/oauth2/v3/certs', format: 'uri' }),
  GOOGLE_REDIRECT_URIS: Type.String({ default: '' }),
  CLOUD_PROVIDER: Enum(['simulated', 'aws'], 'simulated'),
  SIMULATED_START_MS: Type.Integer({ default: 2000, minimum: 0, maximum: 600000 }),
  // The task definitions the simulated cloud has, `family:revision` comma-separated (default: fractal-<app>:1 of the seeded apps).
  SIMULATED_TASK_DEFINITIONS: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]+:[1-9][0-9]*(,[A-Za-z0-9_-]+:[1-9][0-9]*)*$' })),
  ECS_CONTAINER_NAME: Type.String({ default: 'fractal-container', minLength: 1 }),
  AWS_MAX_ATTEMPTS: Type.Integer({ default: 3, minimum: 1, maximum: 10 }),
  CONTAINER_START_TIMEOUT_MS: Type.Integer({ default: 600000, minimum: 1000 }),
  CONTAINER_FIRST_PING_TIMEOUT_MS: Type.Integer({ default: 120000, minimum: 100 }),
  CONTAINER_POLL_MS: Type.Integer({ default: 2000, minimum: 10, maximum: 60000 }),
  CONTAINER_POLL_BUDGET_MS: Type.Integer({ default: 10000, minimum: 0, maximum: 120000 }),
  CONTAINER_PING_TIMEOUT_MS: Type.Integer({ default: 90000, minimum: 1000 }),
  ORPHAN_TASK_GRACE_MS: Type.Integer({ default: 300000, minimum: 0 }),
  CONTAINER_STALLED_MS: Type.Integer({ default: 300000, minimum: 100 }),
  // Concurrent assignments share a transaction (group commit): at most this many each (a subtransaction
  // each; PostgreSQL caches 64 per transaction), this many such transactions at once.
  ASSIGN_BATCH_SIZE: Type.Integer({ default: 32, minimum: 1, maximum: 60 }),
  ASSIGN_BATCHES_IN_FLIGHT: Type.Integer({ default: 2, minimum: 1, maximum: 100 }),
  WARM_POOL_INTERVAL_MS: Type.Integer({ default: 15000, minimum: 100 }),
  WARM_POOL_MAX_STARTS: Type.Integer({ default: 10, minimum: 1, maximum: 1000 }),
  WARM_POOL_MAX_AGE_S: Type.Integer({
    default: 86400,
    minimum: 0,
    maximum: 2592000,
    description: 'Seconds a warm container may wait unclaimed before the reconciliation pass replaces it (0: no maximum); a pool may set its own (docs/warm-pools.md)'
  }),
  REAP_INTERVAL_MS: Type.Integer({ default: 30000, minimum: 100 }),
  GEOIP_LOOKUP: Type.Boolean({ default: true }),
  SESSION_MAX_SECONDS: Type.Integer({ default: 43200, minimum: 0, description: 'Longest a session lasts when neither its plan nor its app sets it (0: no limit).' }),
  SESSION_DISCONNECT_TIMEOUT_SECONDS: Type.Integer({ default: 900, minimum: 0, description: 'How long a held container waits with no client connected, when neither plan nor app sets it (0: no limit).' }),
  SESSION_IDLE_TIMEOUT_SECONDS: Type.Integer({ default: 3600, minimum: 0, description: 'How long a connected client may send no input, when neither plan nor app sets it (0: no limit).' }),
  SESSION_MAX_EXTENSION_SECONDS: Type.Integer({ default: 0, minimum: 0, description: 'How far a user may extend the maximum duration in all, when the plan does not say (0: no extension).' }),
  SESSION_WARNING_SECONDS: Type.Integer({ default: 300, minimum: 0, description: 'How long before a limit ends a session its client is warned (endsAt, a session_warning event).' }),
  SESSION_LIMITS_INTERVAL_MS: Type.Integer({ default: 15000, minimum: 100, description: 'How often the worker checks the sessions against their limits.' }),
  CONNECTION_GRANTS_REQUIRED: Type.Boolean({ default: true, description: 'true: the AES key is released only with a live connection grant (POST /v1/containers/{id}/grants); false: also in the owner\'s container view, as before.' }),
  GRANT_MIN_LIFETIME_SECONDS: Type.Integer({ default: 1, minimum: 1, description: 'Shortest lifetime a connection grant may be asked for.' }),
  GRANT_MAX_LIFETIME_SECONDS: Type.Integer({ default: 604800, minimum: 1, description: 'Longest lifetime a connection grant may be asked for (7 days).' }),
  GRANT_DEFAULT_LIFETIME_SECONDS: Type.Integer({ default: 300, minimum: 1, description: 'Lifetime of a connection grant that does not ask for one.' }),
  HOST_BOOTSTRAP_SECRET: Type.Optional(Type.String({ minLength: 16 })),
  AWS_IDENTITY_CERT: Type.Optional(Type.String({ minLength: 1 })),
  // An identity document is accepted for a first handshake only this long after the instance's launch.
  HOST_IDENTITY_MAX_AGE_S: Type.Integer({ default: 900, minimum: 60, maximum: 86400 }),
  HOST_HANDSHAKE: Enum(['identity-document', 'bootstrap-secret'], 'identity-document'),
  HOST_HEARTBEAT_INTERVAL_S: Type.Integer({ default: 30, minimum: 1, maximum: 600 }),
  HOST_DEAD_AFTER_MS: Type.Integer({ default: 180000, minimum: 1000 }),
  // Concurrent heartbeats share one UPDATE (group commit): at most this many hosts each.
  HEARTBEAT_BATCH_SIZE: Type.Integer({ default: 100, minimum: 1, maximum: 1000 }),
  HOSTS_REAP_INTERVAL_MS: Type.Integer({ default: 30000, minimum: 100 }),
  LOG_MAX_BYTES: Type.Integer({ default: 5242880, minimum: 1024, maximum: 104857600 }),
  LOG_MAX_INFLATED_BYTES: Type.Integer({ default: 104857600, minimum: 1024, maximum: 1073741824 }),
  LOG_BUCKET: Type.Optional(Type.String({ minLength: 3, maxLength: 63 })),
  LOG_S3_REGION: Type.String({ default: 'us-east-1', minLength: 1 }),
  LOG_S3_ENDPOINT: Type.Optional(Type.String({ format: 'uri' })),
  LOG_S3_FORCE_PATH_STYLE: Type.Boolean({ default: false }),
  LOG_RETENTION_DAYS: Type.Integer({ default: 90, minimum: 1, maximum: 3650 }),
  LOG_DOWNLOAD_TTL_S: Type.Integer({ default: 900, minimum: 60, maximum: 604800 }),
  LOG_SPOOL_INTERVAL_MS: Type.Integer({ default: 60000, minimum: 100 }),
  // Where the daily usage file goes (usage/daily/YYYY-MM-DD.csv): this bucket, else LOG_BUCKET, else DATA_DIR.
  USAGE_BUCKET: Type.Optional(Type.String({ minLength: 3, maxLength: 63 })),
  // How often the worker checks that yesterday's usage file is written (it is written once per day).
  USAGE_REPORT_INTERVAL_MS: Type.Integer({ default: 3600000, minimum: 100 }),
  FLEET_SUBNETS: Type.String({ default: '' }),
  FLEET_SECURITY_GROUPS: Type.String({ default: '', pattern: '^[\\w\\s=,|;-]*$' }),
  FLEET_INSTANCE_PROFILE: Type.Optional(Type.String({ pattern: '^(arn:aws[a-z-]*:iam::\\d{12}:instance-profile/)?[\\w+=,.@/-]{1,128}$' })),
  FLEET_PUBLIC_IP: Type.Optional(Type.Boolean()),
  CONTAINERS_PER_HOST: Type.Integer({ default: 4, minimum: 1, maximum: 64 }),
  CLUSTER_POLL_MS: Type.Integer({ default: 15000, minimum: 10 }),
  CLUSTER_JOB_TIMEOUT_MS: Type.Integer({ default: 3600000, minimum: 1000 }),
  CLUSTER_USAGE_INTERVAL_MS: Type.Integer({ default: 300000, minimum: 100 }),
  HOST_AGENT_ENABLED: Type.Optional(Type.Boolean()),
  HOST_AGENT_SCHEME: Enum(['http', 'https'], 'https'),
  HOST_AGENT_PORT: Type.Integer({ default: 4678, minimum: 1, maximum: 65535 }),
  HOST_AGENT_SECRET: Type.Optional(Type.String({ minLength: 16 })),
  HOST_AGENT_TIMEOUT_MS: Type.Integer({ default: 5000, minimum: 100, maximum: 60000 }),
  STRIPE_SECRET_KEY: Type.Optional(Type.String({ pattern: '^(sk|rk)_(test|live)_' })),
  STRIPE_WEBHOOK_SECRET: Type.Optional(Type.String({ pattern: '^whsec_' })),
  STRIPE_API_URL: Type.Optional(Type.String({ format: 'uri' })),
  BILLING_ENFORCED: Type.Optional(Type.Boolean()),
  BILLING_TRIAL_DAYS: Type.Integer({ default: 7, minimum: 0, maximum: 365 }),
  BILLING_TRIAL_CONTAINERS: Type.Integer({ default: 1, minimum: 1, maximum: 100 }),
  BILLING_PAST_DUE_GRACE_DAYS: Type.Integer({ default: 3, minimum: 0, maximum: 90 }),
  STORAGE_PROVIDERS: Type.Optional(Type.String({ minLength: 2 })),
  STORAGE_TOKEN_KEYS: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_-]+:[A-Za-z0-9+/=_-]{43,}(,[A-Za-z0-9_-]+:[A-Za-z0-9+/=_-]{43,})*$' })),
  STORAGE_CLIENT_REDIRECT: Type.Optional(Type.String({ minLength: 3 })),
  STORAGE_GOOGLE_DRIVE_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  STORAGE_GOOGLE_DRIVE_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  STORAGE_DROPBOX_CLIENT_ID: Type.Optional(Type.String({ minLength: 1 })),
  STORAGE_DROPBOX_CLIENT_SECRET: Type.Optional(Type.String({ minLength: 1 })),
  STORAGE_HTTP_TIMEOUT_MS: Type.Integer({ default: 10000, minimum: 100, maximum: 60000 }),
  FLEET_SCALING_INTERVAL_MS: Type.Integer({ default: 60000, minimum: 100 }),
  FLEET_INSTANCE_TYPE: Type.String({ default: 'g4dn.xlarge', pattern: '^[a-z][a-z0-9-]*\\.[a-z0-9]+$' }),
  FLEET_CLUSTER_MAX_SIZE: Type.Integer({ default: 10, minimum: 1, maximum: 1000 }),
  FLEET_EMPTY_CLUSTER_GRACE_MS: Type.Integer({ default: 1800000, minimum: 0 })
})
export type Env = Static<typeof EnvSchema>

function toList (value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean)
}

function pemBlocks (value: string): string[] {
  return value.replace(/\\n/g, '\n').match(/-----BEGIN PUBLIC KEY-----[\s\S]+?-----END PUBLIC KEY-----/g) ?? []
}

/** Env → the nested, frozen Config every part of the app reads. */
function toConfig (env: Env) {
  const dataDir = isAbsolute(env.DATA_DIR) ? env.DATA_DIR : resolve(env.DATA_DIR)
  const env_ = env.NODE_ENV
  // This server as a client on this machine reaches it (a wildcard HOST is reached at the loopback address).
  const ownUrl = `http://${/^(0\.0\.0\.0|::|\[::\])$/.test(env.HOST) ? '127.0.0.1' : env.HOST.includes(':') ? `[${env.HOST}]` : env.HOST}:${env.PORT}`
  const appUrl = (env.APP_URL ?? ownUrl).replace(/\/$/, '')
  return {
    env: env_,
    host: env.HOST,
    port: env.PORT,
    logLevel: env.LOG_LEVEL,
    publicUrl: env.PUBLIC_URL ?? null,
    /** Where this API is reached: PUBLIC_URL, or http://HOST:PORT. */
    apiUrl: (env.PUBLIC_URL ?? ownUrl).replace(/\/$/, ''),
    dataDir,
    db: {
      url: env.DATABASE_URL ?? null,
      poolMax: env.DATABASE_POOL_MAX,
      statementTimeoutMs: env.DATABASE_STATEMENT_TIMEOUT_MS,
      // Development migrates on start; production runs `npm run db:migrate` as a release step.
      autoMigrate: env.DATABASE_AUTO_MIGRATE ?? env_ !== 'production',
      // Development fills an empty catalog so a fresh `npm start` has something to show.
      seedIfEmpty: env.DATABASE_SEED ?? env_ === 'development',
      seedWarmPools: env.DATABASE_SEED_WARM_POOLS ?? (env.CLOUD_PROVIDER === 'simulated' ? 'small' as const : 'full' as const)
    },
    redis: { url: env.REDIS_URL ?? null, prefix: env.REDIS_PREFIX },
    jwt: {
      privateKey: env.JWT_PRIVATE_KEY ?? null,
      publicKey: env.JWT_PUBLIC_KEY ?? null,
      // Retired keys (PEM blocks, one after the other) whose tokens still verify for one token lifetime.
      previousPublicKeys: pemBlocks(env.JWT_PREVIOUS_PUBLIC_KEYS),
      issuer: env.JWT_ISSUER,
      audience: env.JWT_AUDIENCE,
      accessTokenTtl: env.ACCESS_TOKEN_TTL
    },
    http: {
      corsOrigins: toList(env.CORS_ORIGINS),
      trustProxy: toList(env.TRUST_PROXY),
      bodyLimit: env.BODY_LIMIT,
      requestTimeoutMs: env.REQUEST_TIMEOUT_MS,
      shutdownGraceMs: env.SHUTDOWN_GRACE_MS,
      // What in-flight requests and jobs get of the grace period; the rest is for cutting and handing back.
      shutdownDrainMs: Math.max(100, env.SHUTDOWN_GRACE_MS - Math.min(2000, Math.floor(env.SHUTDOWN_GRACE_MS / 4)))
    },
    // failClosed: operations whose x-rate-limit says failClosed answer 503 while the limiter's Redis is away.
    rateLimit: { enabled: env.RATE_LIMIT_ENABLED, failClosed: env.RATE_LIMIT_FAIL_CLOSED },
    // Server-sent event streams open at once, per user (all processes) and per process; resyncMs: how often
    // a process reads its streamed jobs again in case a change announcement was lost.
    eventStreams: { perUser: env.EVENT_STREAMS_PER_USER, perProcess: env.EVENT_STREAMS_PER_PROCESS, resyncMs: env.JOB_EVENTS_RESYNC_MS },
    cache: {
      originTtlMs: env.ORIGIN_CACHE_TTL_MS,
      sharedTtlMs: env.SHARED_CACHE_TTL_MS,
      purger: {
        kind: env.CACHE_PURGER as 'none' | 'varnish' | 'fastly' | 'cloudflare',
        varnishUrls: toList(env.VARNISH_PURGE_URLS),
        fastly: { apiUrl: env.FASTLY_API_URL, token: env.FASTLY_API_TOKEN ?? null, serviceId: env.FASTLY_SERVICE_ID ?? null },
        cloudflare: { apiUrl: env.CLOUDFLARE_API_URL, token: env.CLOUDFLARE_API_TOKEN ?? null, zoneId: env.CLOUDFLARE_ZONE_ID ?? null },
        timeoutMs: env.CACHE_PURGE_TIMEOUT_MS
      }
    },
    // The scrape token: GET /metrics on the API port (and the details of /readyz) need `Authorization: Bearer
    // <token>`; without one the API port serves metrics to no one. `port`: the web process also serves them
    // there, alone, for a scraper inside the deployment (the token is asked there too when there is one).
    metrics: { token: env.METRICS_TOKEN ?? null, port: env.METRICS_PORT ?? null },
    // metricsPort: a standalone worker serves /metrics there (asking for METRICS_TOKEN when there is one).
    // stallIntervalMs: a job whose worker died goes back to the queue after one to two of these.
    worker: { concurrency: env.WORKER_CONCURRENCY, metricsPort: env.WORKER_METRICS_PORT ?? null, stallIntervalMs: env.QUEUE_STALL_INTERVAL_MS, retryBackoffMs: env.QUEUE_RETRY_BACKOFF_MS },
    // Traces go to an OTLP/HTTP collector only when an endpoint is set (the standard OTEL_* variables).
    telemetry: {
      tracesUrl: env.OTEL_SDK_DISABLED
        ? null
        : env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT ?? (env.OTEL_EXPORTER_OTLP_ENDPOINT ? `${env.OTEL_EXPORTER_OTLP_ENDPOINT.replace(/\/$/, '')}/v1/traces` : null),
      serviceName: env.OTEL_SERVICE_NAME ?? null
    },
    appUrl,
    /** APP_URL was set: mailed links lead to a web app (else to this server, which has no pages for them). */
    appUrlSet: env.APP_URL !== undefined,
    mail: { smtpUrl: env.SMTP_URL ?? null, from: env.MAIL_FROM, maxPerAddressPerHour: env.MAIL_MAX_PER_ADDRESS_PER_HOUR },
    accounts: {
      refreshTokenTtlDays: env.REFRESH_TOKEN_TTL_DAYS,
      passwordMinLength: env.PASSWORD_MIN_LENGTH,
      signInMaxFailures: env.SIGN_IN_MAX_FAILURES,
      personalTokenMaxTtlDays: env.PAT_MAX_TTL_DAYS,
      personalTokensPerAccount: env.PAT_MAX_PER_ACCOUNT
    },
    containers: {
      provider: env.CLOUD_PROVIDER,
      simulatedStartMs: env.SIMULATED_START_MS,
      simulatedTaskDefinitions: env.SIMULATED_TASK_DEFINITIONS ? toList(env.SIMULATED_TASK_DEFINITIONS) : null,
      ecsContainerName: env.ECS_CONTAINER_NAME,
      awsMaxAttempts: env.AWS_MAX_ATTEMPTS,
      startTimeoutMs: env.CONTAINER_START_TIMEOUT_MS,
      firstPingTimeoutMs: env.CONTAINER_FIRST_PING_TIMEOUT_MS,
      pollMs: env.CONTAINER_POLL_MS,
      pollBudgetMs: env.CONTAINER_POLL_BUDGET_MS,
      pingTimeoutMs: env.CONTAINER_PING_TIMEOUT_MS,
      orphanGraceMs: env.ORPHAN_TASK_GRACE_MS,
      stalledMs: env.CONTAINER_STALLED_MS,
      assignBatch: { maxSize: env.ASSIGN_BATCH_SIZE, maxInFlight: env.ASSIGN_BATCHES_IN_FLIGHT },
      warmPoolIntervalMs: env.WARM_POOL_INTERVAL_MS,
      warmPoolMaxStarts: env.WARM_POOL_MAX_STARTS,
      warmPoolMaxAgeS: env.WARM_POOL_MAX_AGE_S,
      reapIntervalMs: env.REAP_INTERVAL_MS,
      geoipLookup: env.GEOIP_LOOKUP,
      // Issue 22: the defaults of the session limits (plans set theirs, apps override them), in seconds.
      sessions: {
        defaults: {
          maxSessionSeconds: env.SESSION_MAX_SECONDS,
          disconnectTimeoutSeconds: env.SESSION_DISCONNECT_TIMEOUT_SECONDS,
          idleTimeoutSeconds: env.SESSION_IDLE_TIMEOUT_SECONDS,
          maxExtensionSeconds: env.SESSION_MAX_EXTENSION_SECONDS
        },
        warningSeconds: env.SESSION_WARNING_SECONDS,
        intervalMs: env.SESSION_LIMITS_INTERVAL_MS
      },
      grants: {
        required: env.CONNECTION_GRANTS_REQUIRED,
        minLifetimeSeconds: env.GRANT_MIN_LIFETIME_SECONDS,
        maxLifetimeSeconds: env.GRANT_MAX_LIFETIME_SECONDS,
        defaultLifetimeSeconds: Math.min(Math.max(env.GRANT_DEFAULT_LIFETIME_SECONDS, env.GRANT_MIN_LIFETIME_SECONDS), env.GRANT_MAX_LIFETIME_SECONDS)
      }
    },
    google: {
      clientId: env.GOOGLE_CLIENT_ID ?? null,
      clientSecret: env.GOOGLE_CLIENT_SECRET ?? null,
      issuer: env.GOOGLE_ISSUER,
      tokenUrl: env.GOOGLE_TOKEN_URL,
      jwksUrl: env.GOOGLE_JWKS_URL,
      redirectUris: toList(env.GOOGLE_REDIRECT_URIS)
    },
    hosts: {
      // Outbound calls to the host agents: on once their shared secret is configured.
      agent: {
        enabled: env.HOST_AGENT_ENABLED ?? env.HOST_AGENT_SECRET !== undefined,
        scheme: env.HOST_AGENT_SCHEME,
        port: env.HOST_AGENT_PORT,
        secret: env.HOST_AGENT_SECRET ?? null,
        timeoutMs: env.HOST_AGENT_TIMEOUT_MS
      },
      bootstrapSecret: env.HOST_BOOTSTRAP_SECRET ?? null,
      identityCert: env.AWS_IDENTITY_CERT ?? null,
      identityMaxAgeS: env.HOST_IDENTITY_MAX_AGE_S,
      // How the hosts' agents are told to shake hands (their user data): the signed identity document, or the secret.
      handshake: env.HOST_HANDSHAKE as 'identity-document' | 'bootstrap-secret',
      heartbeatIntervalS: env.HOST_HEARTBEAT_INTERVAL_S,
      deadAfterMs: env.HOST_DEAD_AFTER_MS,
      heartbeatBatchSize: env.HEARTBEAT_BATCH_SIZE,
      reapIntervalMs: env.HOSTS_REAP_INTERVAL_MS
    },
    fleet: {
      // `subnet-a,subnet-b` for every region, or `us-east-1=subnet-a|subnet-b;eu-west-1=subnet-c`.
      subnets: env.FLEET_SUBNETS,
      // The hosts' launch template: security groups (same syntax as subnets), instance profile (name or ARN),
      // and whether they get a public address. Required with CLOUD_PROVIDER=aws (awsSettingsMissing).
      securityGroups: env.FLEET_SECURITY_GROUPS,
      instanceProfile: env.FLEET_INSTANCE_PROFILE ?? null,
      publicIp: env.FLEET_PUBLIC_IP ?? null,
      containersPerHost: env.CONTAINERS_PER_HOST,
      pollMs: env.CLUSTER_POLL_MS,
      jobTimeoutMs: env.CLUSTER_JOB_TIMEOUT_MS,
      usageIntervalMs: env.CLUSTER_USAGE_INTERVAL_MS,
      scalingIntervalMs: env.FLEET_SCALING_INTERVAL_MS,
      instanceType: env.FLEET_INSTANCE_TYPE,
      clusterMaxSize: env.FLEET_CLUSTER_MAX_SIZE,
      emptyClusterGraceMs: env.FLEET_EMPTY_CLUSTER_GRACE_MS
    },
    billing: {
      stripeSecretKey: env.STRIPE_SECRET_KEY ?? null,
      webhookSecret: env.STRIPE_WEBHOOK_SECRET ?? null,
      // A stand-in for api.stripe.com (tests): the real client, another host.
      stripeApiUrl: env.STRIPE_API_URL ?? null,
      // Access is decided by plans once Stripe is configured; without it everyone may stream (embedded).
      enforced: env.BILLING_ENFORCED ?? env.STRIPE_SECRET_KEY !== undefined,
      trialDays: env.BILLING_TRIAL_DAYS,
      trialContainers: env.BILLING_TRIAL_CONTAINERS,
      pastDueGraceDays: env.BILLING_PAST_DUE_GRACE_DAYS
    },
    storage: {
      // JSON of the providers (code, name, iconUrl, termsUrl, OAuth endpoints, scopes); default db/storage-providers.json.
      providersJson: env.STORAGE_PROVIDERS ?? null,
      // `kid:base64key,...` (AES-256: 32 bytes each), the first encrypts; none: one key derived from the JWT key.
      tokenKeys: env.STORAGE_TOKEN_KEYS ?? null,
      clientRedirect: env.STORAGE_CLIENT_REDIRECT ?? `${appUrl}/storage`,
      // OAuth clients of the built-in providers (a provider given in STORAGE_PROVIDERS carries its own).
      clients: {
        google_drive: { clientId: env.STORAGE_GOOGLE_DRIVE_CLIENT_ID ?? null, clientSecret: env.STORAGE_GOOGLE_DRIVE_CLIENT_SECRET ?? null },
        dropbox: { clientId: env.STORAGE_DROPBOX_CLIENT_ID ?? null, clientSecret: env.STORAGE_DROPBOX_CLIENT_SECRET ?? null }
      } as Record<string, { clientId: string | null, clientSecret: string | null }>,
      httpTimeoutMs: env.STORAGE_HTTP_TIMEOUT_MS
    },
    logs: {
      maxBytes: env.LOG_MAX_BYTES,
      // What a log may expand to (a gzip body inflated, a text body as sent): past it, 413 as a bomb would be.
      maxInflatedBytes: env.LOG_MAX_INFLATED_BYTES,
      // A bucket means S3 (or an S3-compatible endpoint); without one, logs go to DATA_DIR/logs.
      bucket: env.LOG_BUCKET ?? null,
      s3Region: env.LOG_S3_REGION,
      s3Endpoint: env.LOG_S3_ENDPOINT ?? null,
      s3ForcePathStyle: env.LOG_S3_FORCE_PATH_STYLE,
      retentionDays: env.LOG_RETENTION_DAYS,
      downloadTtlS: env.LOG_DOWNLOAD_TTL_S,
      spoolIntervalMs: env.LOG_SPOOL_INTERVAL_MS,
      folder: join(dataDir, 'logs')
    },
    usage: {
      // Its own bucket, or the log bucket (under usage/), reached with the LOG_S3_* settings; DATA_DIR without either.
      bucket: env.USAGE_BUCKET ?? env.LOG_BUCKET ?? null,
      s3Region: env.LOG_S3_REGION,
      s3Endpoint: env.LOG_S3_ENDPOINT ?? null,
      s3ForcePathStyle: env.LOG_S3_FORCE_PATH_STYLE,
      reportIntervalMs: env.USAGE_REPORT_INTERVAL_MS,
      folder: dataDir
    },
    // Test mode validates every response against the spec, not only serialises it.
    validateResponses: env_ === 'test'
  }
}

type DeepReadonly<T> = { readonly [K in keyof T]: T[K] extends object ? DeepReadonly<T[K]> : T[K] }
export type Config = DeepReadonly<ReturnType<typeof toConfig>>

function deepFreeze<T extends object> (value: T): T {
  for (const child of Object.values(value)) {
    if (child !== null && typeof child === 'object') deepFreeze(child)
  }
  return Object.freeze(value)
}

let envAjv: Ajv | undefined

// What each variable production must name selects when it is unset (the embedded defaults).
const productionRequired = {
  DATABASE_URL: 'PGlite in DATA_DIR',
  REDIS_URL: 'an in-process queue, rate-limit store and cache',
  CLOUD_PROVIDER: 'the simulated cloud with fake 203.0.113.x addresses and no real containers: set `aws`, or `simulated` on purpose'
} as const

/**
 * NODE_ENV=production never falls back to an embedded default: DATABASE_URL, REDIS_URL and CLOUD_PROVIDER
 * must be set. Reads the environment as given, before the schema fills in defaults (CLOUD_PROVIDER has one).
 * Answers one problem naming every missing variable, or none.
 */
export function productionProblems (env: Record<string, string | undefined>): string[] {
  if (env.NODE_ENV !== 'production') return []
  const missing = Object.entries(productionRequired).filter(([name]) => (env[name] ?? '').trim() === '')
  if (missing.length === 0) return []
  return [`NODE_ENV=production requires ${missing.map(([name, fallback]) => `${name} (unset: ${fallback})`).join(', ')}`]
}

/**
 * Parses an environment (process.env by default) into a Config. Every bad variable is reported in one
 * error, e.g. `invalid configuration: PORT must be <= 65535; DATABASE_URL must match pattern "^postgres(ql)?://"`.
 */
export function loadConfig (env: Record<string, string | undefined> = process.env): Config {
  const problems = productionProblems(env)
  let parsed: Env
  try {
    // One Ajv for the process (env-schema's options): it compiles the schema once (tests load many configs).
    // Its code is not optimised: it runs once per process, and Ajv's optimiser is most of its compile time.
    envAjv ??= new Ajv({ allErrors: true, removeAdditional: true, useDefaults: true, coerceTypes: true, allowUnionTypes: true, addUsedSchema: false, keywords: [envSchema.keywords.separator], code: { optimize: false } })
      .addFormat('uri', /^https?:\/\/\S+$/)
    parsed = envSchema<Env>({ schema: EnvSchema, data: env, env: false, dotenv: false, ajv: envAjv })
  } catch (err) {
    const parts = (err as Error).message.split(', env').map((part) => part.replace(/^(env)?\//, ''))
    throw new Error(`invalid configuration: ${[...new Set(parts), ...problems].join('; ')}`)
  }
  const missing = awsSettingsMissing(parsed)
  if (missing.length > 0) problems.push(`CLOUD_PROVIDER=aws needs ${missing.join(', ')}`)
  if (parsed.GRANT_MIN_LIFETIME_SECONDS > parsed.GRANT_MAX_LIFETIME_SECONDS) problems.push('GRANT_MIN_LIFETIME_SECONDS must be <= GRANT_MAX_LIFETIME_SECONDS')
  if (problems.length > 0) throw new Error(`invalid configuration: ${problems.join('; ')}`)
  return deepFreeze(toConfig(parsed))
}

/**
 * What CLOUD_PROVIDER=aws cannot run without: hosts that can join ECS (an instance profile), be reached
 * (security groups, an address decided on), call us back (PUBLIC_URL, not 127.0.0.1) and shake hands
 * (the certificate of the identity documents, or the bootstrap secret, as HOST_HANDSHAKE says).
 */
export function awsSettingsMissing (env: Env): string[] {
  if (env.CLOUD_PROVIDER !== 'aws') return []
  const missing: string[] = []
  if (!env.PUBLIC_URL) missing.push('PUBLIC_URL')
  else if (/^(localhost|127\.[\d.]+|\[::1\]|0\.0\.0\.0)$/.test(new URL(env.PUBLIC_URL).hostname)) missing.push(`PUBLIC_URL (one the hosts can reach, not ${env.PUBLIC_URL})`)
  if (!env.FLEET_INSTANCE_PROFILE) missing.push('FLEET_INSTANCE_PROFILE')
  if (!env.FLEET_SECURITY_GROUPS.trim()) missing.push('FLEET_SECURITY_GROUPS')
  if (env.FLEET_PUBLIC_IP === undefined) missing.push('FLEET_PUBLIC_IP')
  if (env.HOST_HANDSHAKE === 'identity-document' && !env.AWS_IDENTITY_CERT) missing.push('AWS_IDENTITY_CERT (HOST_HANDSHAKE=identity-document)')
  if (env.HOST_HANDSHAKE === 'bootstrap-secret' && !env.HOST_BOOTSTRAP_SECRET) missing.push('HOST_BOOTSTRAP_SECRET (HOST_HANDSHAKE=bootstrap-secret)')
  return missing
}

/** What the embedded defaults replace, for the one start-up log line. */
export function embeddedDefaults (config: Config): string[] {
  const used: string[] = []
  if (!config.db.url) used.push(`PGlite in ${config.dataDir}/pglite (no DATABASE_URL)`)
  if (!config.redis.url) used.push('in-process queue, rate-limit store and cache (no REDIS_URL)')
  if (!config.mail.smtpUrl) used.push('mail written to the log (no SMTP_URL)')
  if (!config.jwt.privateKey) used.push(`a generated ES256 key pair in ${config.dataDir}/jwt (no JWT_PRIVATE_KEY)`)
  if (!config.appUrlSet) used.push(`mailed links lead to ${config.appUrl}, this server (no APP_URL)`)
  return used
}

/** The start-up warning whenever the simulated cloud is in use (null with a real one). */
export function simulatedCloudWarning (config: Config): string | null {
  if (config.containers.provider !== 'simulated') return null
  return 'SIMULATED CLOUD (CLOUD_PROVIDER=simulated): no real host or container is started; containers "run" after ' +
    `SIMULATED_START_MS (${config.containers.simulatedStartMs} ms) at fake addresses 203.0.113.x. Set CLOUD_PROVIDER=aws for real ones.`
}

declare module 'fastify' {
  interface FastifyInstance {
    config: Config
  }
}

export default fp<{ config: Config }>(async function configPlugin (app, opts) {
  if (!opts.config || !Object.isFrozen(opts.config)) {
    throw new Error('config: options.config must be a Config from loadConfig()')
  }
  app.decorate('config', opts.config)
}, { fastify: '5.x', name: 'config' })
