import { sql, type Kysely } from 'kysely'

// Issue 22, items 1 and 2: sessions end by themselves within their limits, and connecting takes a grant.
// - plan.session_limits, app.session_limits: the limits of a plan, and an app's overrides (jsonb, seconds:
//   maxSessionSeconds, disconnectTimeoutSeconds, idleTimeoutSeconds, maxExtensionSeconds); null: none set.
// - container: when the session will end and why (set once its client is warned), the last input the
//   container reported, when a client last connected or left, when its maximum duration ends (set by the
//   first limits pass of the session, moved by extensions), and when a limit ended the session (its usage
//   counts up to then, not to the stop job's end).
// - container_event.kind: 'state' (a change of state, as before) or a session event (warning, extended,
//   ended), with the end it announces; the per-container event stream reads them by id.
// - container_grant: a connection grant (its id is the signed token's jti), revocable, for one container.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('plan').addColumn('session_limits', 'jsonb').execute()
  await db.schema.alterTable('app').addColumn('session_limits', 'jsonb').execute()
  await db.schema.alterTable('container')
    .addColumn('ends_at', 'timestamptz')
    .addColumn('ending_reason', 'text')
    .addColumn('last_input_at', 'timestamptz')
    .addColumn('client_changed_at', 'timestamptz')
    .addColumn('max_ends_at', 'timestamptz')
    .addColumn('session_ended_at', 'timestamptz')
    .execute()
  await sql`alter table container add constraint container_ending_reason_check
    check (ending_reason in ('max_duration', 'disconnected', 'idle'))`.execute(db)
  await db.schema.alterTable('container_event')
    .addColumn('kind', 'text', (c) => c.notNull().defaultTo('state'))
    .addColumn('ends_at', 'timestamptz')
    .execute()
  await sql`alter table container_event add constraint container_event_kind_check
    check (kind in ('state', 'session_warning', 'session_extended', 'session_ended'))`.execute(db)

  await db.schema.createTable('container_grant')
    .addColumn('id', 'uuid', (c) => c.notNull().defaultTo(sql`gen_random_uuid()`))
    .addColumn('container_id', 'uuid', (c) => c.notNull())
    .addColumn('user_id', 'uuid', (c) => c.notNull())
    .addColumn('created_at', 'timestamptz', (c) => c.notNull())
    .addColumn('expires_at', 'timestamptz', (c) => c.notNull())
    .addColumn('revoked_at', 'timestamptz')
    .addPrimaryKeyConstraint('container_grant_pkey', ['id'])
    .addForeignKeyConstraint('container_grant_container_id_fkey', ['container_id'], 'container', ['id'], (fk) => fk.onDelete('cascade'))
    .addForeignKeyConstraint('container_grant_user_id_fkey', ['user_id'], 'account', ['id'], (fk) => fk.onDelete('cascade'))
    .addCheckConstraint('container_grant_lifetime_check', sql`expires_at > created_at`)
    .execute()
  await db.schema.createIndex('container_grant_container_id_idx').on('container_grant').columns(['container_id', 'expires_at']).execute()
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropTable('container_grant').execute()
  await sql`alter table container_event drop constraint container_event_kind_check`.execute(db)
  await db.schema.alterTable('container_event').dropColumn('kind').dropColumn('ends_at').execute()
  await sql`alter table container drop constraint container_ending_reason_check`.execute(db)
  await db.schema.alterTable('container')
    .dropColumn('ends_at').dropColumn('ending_reason').dropColumn('last_input_at')
    .dropColumn('client_changed_at').dropColumn('max_ends_at').dropColumn('session_ended_at')
    .execute()
  await db.schema.alterTable('app').dropColumn('session_limits').execute()
  await db.schema.alterTable('plan').dropColumn('session_limits').execute()
}
