// Jobs as their owners (or admins) read and cancel them; their event streams are containers.job-events.ts.
import type { Kysely } from 'kysely'
import type { DB, Job } from '../../db/types.js'
import { JobNotFound } from './containers.errors.js'
import { queueStop } from './containers.lifecycle.js'
import * as repo from './containers.repository.js'
import type { ContainerDeps } from './containers.service.js'

export async function getJob (db: Kysely<DB>, principal: { userId: string, role: string }, id: string): Promise<Job> {
  const job = await repo.findJob(db, id)
  if (!job || (job.owner_id !== principal.userId && principal.role !== 'admin')) throw new JobNotFound(id)
  return job
}

/** Cancels a start job: its container is stopped; an ended job is returned as it is. */
export async function cancelJob (db: Kysely<DB>, deps: Pick<ContainerDeps, 'queue'>, principal: { userId: string, role: string }, id: string): Promise<Job> {
  const job = await getJob(db, principal, id)
  if (job.kind !== 'start_container' || job.state === 'succeeded' || job.state === 'failed' || job.state === 'cancelled') return job
  await repo.updateJob(db, id, { state: 'cancelled', message: 'cancelled', progress: 100 })
  const ref = await repo.containerOfJob(db, id)
  const container = ref ? await repo.findContainer(db, ref.container_id) : undefined
  if (container) await queueStop(db, deps, container)
  return (await repo.findJob(db, id))!
}

/** The jobs with these ids (those that exist), in one query. */
export async function jobsByIds (db: Kysely<DB>, ids: readonly string[]): Promise<Job[]> {
  return repo.findJobs(db, ids)
}
