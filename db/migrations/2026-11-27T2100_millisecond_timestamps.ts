import { sql, type Kysely } from 'kysely'

// Keyset cursors carry created_at as JavaScript reads it: to the millisecond. PostgreSQL keeps microseconds,
// so two rows of one millisecond could fall between two pages. The paginated tables now store created_at
// to the millisecond, whatever an insert gives (a trigger; the id breaks ties), and existing rows are
// truncated the same way.
const tables = ['account', 'container', 'cluster', 'host', 'log_upload']

export async function up (db: Kysely<any>): Promise<void> {
  await sql`create function created_at_to_milliseconds() returns trigger language plpgsql as $$
begin
  new.created_at := date_trunc('milliseconds', new.created_at);
  return new;
end $$`.execute(db)
  for (const table of tables) {
    await sql`alter table ${sql.table(table)} alter column created_at set default date_trunc('milliseconds', now())`.execute(db)
    await sql`update ${sql.table(table)} set created_at = date_trunc('milliseconds', created_at) where created_at <> date_trunc('milliseconds', created_at)`.execute(db)
    await sql`create trigger ${sql.raw(`${table}_created_at_ms_trg`)} before insert or update of created_at on ${sql.table(table)}
      for each row execute function created_at_to_milliseconds()`.execute(db)
  }
}

export async function down (db: Kysely<any>): Promise<void> {
  for (const table of tables) {
    await sql`drop trigger ${sql.raw(`${table}_created_at_ms_trg`)} on ${sql.table(table)}`.execute(db)
    await sql`alter table ${sql.table(table)} alter column created_at set default now()`.execute(db)
  }
  await sql`drop function created_at_to_milliseconds()`.execute(db)
}
