import type { Kysely } from 'kysely'
import type { DB } from '../../db/types.js'
import type { JobDefinition } from '../queue.js'
import * as repo from './containers.repository.js'
import { startContainerJob, stopContainerJob, type StartContainerPayload, type StopContainerPayload } from './containers.service.js'
import type { CloudProvider } from './provider.js'

export interface ContainerJobDeps {
  db: Kysely<DB>
  provider: CloudProvider
  /** Where the container calls us back (pings, protocol info). */
  callbackUrl: string
  log: { warn (obj: object, msg: string): void }
}

/**
 * Starts the task for a container and records where it runs. Idempotent: the provider finds the task it
 * already started for this container, so a retried or resumed job never starts a second one. Every way out
 * of the last attempt leaves the container and the job in a terminal state.
 */
async function startContainer (deps: ContainerJobDeps, data: StartContainerPayload, lastAttempt: boolean) {
  const { db } = deps
  const job = await repo.findJob(db, data.jobId)
  if (job?.state === 'cancelled') return { cancelled: true }
  const container = await repo.findContainer(db, data.containerId)
  if (!container || container.state === 'stopped' || container.state === 'failed' || container.state === 'stopping') {
    await repo.updateJob(db, data.jobId, { state: 'cancelled', message: 'the container was stopped before it started', progress: 100 })
    return { cancelled: true }
  }
  if (container.state === 'available' || container.state === 'in_use') {
    await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'running', result: JSON.stringify({ containerId: container.id }) })
    return { containerId: container.id }
  }
  await repo.updateJob(db, data.jobId, { state: 'running', progress: 10, message: 'starting the task' })
  if (container.state === 'creating') {
    await repo.updateContainer(db, container.id, { state: 'starting' })
    await repo.insertContainerEvent(db, { container_id: container.id, from_state: 'creating', to_state: 'starting', job_id: data.jobId })
  }
  try {
    const offer = await db.selectFrom('app_region').select('task_definition').where('app_id', '=', container.app_id).where('region_code', '=', container.region_code).executeTakeFirstOrThrow()
    const cluster = container.cluster_id ? await db.selectFrom('cluster').select('name').where('id', '=', container.cluster_id).executeTakeFirst() : undefined
    const task = await deps.provider.startTask({
      containerId: container.id,
      region: container.region_code,
      cluster: cluster?.name ?? `fractal-${container.region_code}-1`,
      taskDefinition: offer.task_definition,
      environment: {
        FRACTAL_CONTAINER_ID: container.id,
        FRACTAL_AES_KEY: container.aes_key,
        FRACTAL_CONTAINER_SECRET: data.secret,
        FRACTAL_CALLBACK_URL: deps.callbackUrl,
        FRACTAL_DPI: String(container.dpi)
      }
    })
    const state = container.user_id ? 'in_use' : 'available'
    const started = await db.transaction().execute(async (trx) => {
      const done = await repo.completeStart(trx, container.id, {
        state, task_arn: task.taskArn, host_ip: task.hostIp, port_32262: task.ports.tcp32262, port_32263: task.ports.udp32263, port_32273: task.ports.tcp32273
      })
      if (!done) return false
      await repo.insertContainerEvent(trx, { container_id: container.id, from_state: 'starting', to_state: state, job_id: data.jobId })
      await repo.updateJob(trx, data.jobId, { state: 'succeeded', progress: 100, message: 'running', result: JSON.stringify({ containerId: container.id }) })
      return true
    })
    if (!started) {
      // Stopped while it was starting (a cancel): the task just started must not run on.
      await deps.provider.stopTask(container.region_code, cluster?.name ?? '', task.taskArn)
      return { cancelled: true }
    }
    return { containerId: container.id }
  } catch (err) {
    if (!lastAttempt) {
      await repo.updateJob(db, data.jobId, { message: `retrying: ${(err as Error).message}` })
      throw err
    }
    await db.transaction().execute(async (trx) => {
      await repo.updateContainer(trx, container.id, { state: 'failed', failure_reason: (err as Error).message.slice(0, 500) })
      await repo.insertContainerEvent(trx, { container_id: container.id, from_state: 'starting', to_state: 'failed', job_id: data.jobId, reason: (err as Error).message.slice(0, 500) })
      await repo.updateJob(trx, data.jobId, { state: 'failed', progress: 100, error_code: 'start_failed', message: (err as Error).message.slice(0, 500) })
    })
    deps.log.warn({ err, containerId: container.id }, 'container failed to start')
    return { failed: true }
  }
}

async function stopContainer (deps: ContainerJobDeps, data: StopContainerPayload) {
  const { db } = deps
  const container = await repo.findContainer(db, data.containerId)
  if (!container) {
    await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'gone' })
    return
  }
  if (container.state !== 'stopped') {
    await repo.updateJob(db, data.jobId, { state: 'running', progress: 30, message: 'stopping the task' })
    if (container.state !== 'stopping') {
      await repo.updateContainer(db, container.id, { state: 'stopping' })
      await repo.insertContainerEvent(db, { container_id: container.id, from_state: container.state, to_state: 'stopping', job_id: data.jobId })
    }
    if (container.task_arn) {
      const cluster = container.cluster_id ? await db.selectFrom('cluster').select('name').where('id', '=', container.cluster_id).executeTakeFirst() : undefined
      await deps.provider.stopTask(container.region_code, cluster?.name ?? '', container.task_arn)
    }
    // The container and its job end together: nobody reads a stopped container with a running job.
    await db.transaction().execute(async (trx) => {
      await repo.updateContainer(trx, container.id, { state: 'stopped' })
      await repo.insertContainerEvent(trx, { container_id: container.id, from_state: 'stopping', to_state: 'stopped', job_id: data.jobId })
      await repo.updateJob(trx, data.jobId, { state: 'succeeded', progress: 100, message: 'stopped' })
    })
    return
  }
  await repo.updateJob(db, data.jobId, { state: 'succeeded', progress: 100, message: 'stopped' })
}

export function createContainerJobs (deps: ContainerJobDeps): JobDefinition[] {
  return [
    { ...startContainerJob, handle: (data: StartContainerPayload, ctx) => startContainer(deps, data, ctx.lastAttempt) },
    { ...stopContainerJob, handle: (data: StopContainerPayload) => stopContainer(deps, data) }
  ]
}
