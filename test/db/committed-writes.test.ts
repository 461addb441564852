// The database tells which job rows were updated once the update is committed: what feeds the job event
// streams of every process, whatever code path wrote the row.
import { sql } from '../../db/kysely.js'
import t from 'tap'
import { createDatabase, type Database } from '../../db/database.js'
import type { UpdatedIds } from '../../db/committed-writes.js'
import { createTestDatabase } from '../helpers/database.js'

async function setup (t: { teardown (fn: () => unknown): void }) {
  const database = await createTestDatabase()
  t.teardown(() => database.drop())
  const { db, writes } = await createDatabase({ url: database.url, dataDir: '', poolMax: 2 })
  t.teardown(() => db.destroy())
  const told: UpdatedIds[] = []
  writes.on('job', (ids) => { told.push(ids) })
  const job = () => db.insertInto('job').values({ kind: 'start_container', owner_id: null, message: 'queued' }).returning('id').executeTakeFirstOrThrow().then((r) => r.id)
  return { db, writes, told, job }
}

/** The job's state as another connection sees it, when a listener is told. */
const stateSeenBy = (db: Database, id: string) => db.selectFrom('job').select('state').where('id', '=', id).executeTakeFirstOrThrow().then((r) => r.state)

t.test('committed writes › an update outside a transaction is told at once, with its ids', async (t) => {
  const { db, told, job } = await setup(t)
  const [a, b] = [await job(), await job()]
  t.same(told, [], 'inserting a job tells nobody (no stream can watch it yet)')
  await db.updateTable('job').set({ progress: 10 }).where('id', '=', a).where('state', '!=', 'cancelled').execute()
  await db.updateTable('job as j').set({ progress: 20 }).where('j.id', 'in', [a, b]).execute()
  await db.updateTable('container').set({ state: 'failed' }).where('id', '=', a).execute()
  await db.selectFrom('job').selectAll().where('id', '=', a).execute()
  t.same(told, [[a], [a, b]], 'each update of job, naming its rows; other tables and reads tell nothing')
})

t.test('committed writes › inside a transaction: told after COMMIT, when another connection sees the change; never after a rollback', async (t) => {
  const { db, writes, told, job } = await setup(t)
  const id = await job()
  // What a listener in another process would do: read the row again, on another connection.
  const seen: Array<Promise<string>> = []
  writes.on('job', () => { seen.push(stateSeenBy(db, id)) })
  await db.transaction().execute(async (trx) => {
    await trx.updateTable('job').set({ state: 'running' }).where('id', '=', id).execute()
    await trx.updateTable('job').set({ progress: 50 }).where('id', '=', id).execute()
    t.same(told, [], 'nothing before the commit')
  })
  t.same(told, [[id]], 'once, at the commit, for both updates')
  t.same(await Promise.all(seen), ['running'], 'a listener reading the row when told sees the committed change')
  await t.rejects(db.transaction().execute(async (trx) => {
    await trx.updateTable('job').set({ state: 'failed' }).where('id', '=', id).execute()
    throw new Error('rolled back')
  }))
  t.same(told, [[id]], 'a rolled-back update is never told')
})

t.test('committed writes › an update that does not pin the ids, or a raw one, tells null (re-read them all)', async (t) => {
  const { db, told, job } = await setup(t)
  const parent = await job()
  await db.updateTable('job').set({ state: 'cancelled' }).where('parent_id', '=', parent).execute()
  await sql`update job set progress = 5 where id = ${parent}`.execute(db)
  await sql`with x as (update "public"."job" set progress = 6 returning id) select count(*) from x`.execute(db)
  await db.updateTable('job').set({ progress: 7 }).where((eb) => eb.or([eb('id', '=', parent), eb('progress', '=', 0)])).execute()
  t.same(told, [null, null, null, null])
})
