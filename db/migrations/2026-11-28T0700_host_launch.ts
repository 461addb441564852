import { sql, type Kysely } from 'kysely'

// Issue 18, item 7: an identity document was accepted again and again, and the host's address was the
// one the caller named.
// - host.launched_at: the launch (the document's `pendingTime`) whose document was accepted. A document of
//   that launch, or an older one, is not accepted again (with instance_id unique: once per launch).
// - container.host_instance_id: the EC2 instance ECS placed the task on. The dead-host reaper matches
//   containers by it (what the identity document authenticates), not by an address.
export async function up (db: Kysely<any>): Promise<void> {
  await db.schema.alterTable('host').addColumn('launched_at', 'timestamptz').execute()
  await db.schema.alterTable('container').addColumn('host_instance_id', 'text').execute()
  await sql`create index container_host_instance_id_idx on container (host_instance_id) where host_instance_id is not null`.execute(db)
}

export async function down (db: Kysely<any>): Promise<void> {
  await db.schema.dropIndex('container_host_instance_id_idx').execute()
  await db.schema.alterTable('container').dropColumn('host_instance_id').execute()
  await db.schema.alterTable('host').dropColumn('launched_at').execute()
}
