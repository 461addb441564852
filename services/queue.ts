// The queue as the domain sees it. plugins/queue.ts implements it on bee-queue (Redis) or in process.
// warm-pools: background container starts (refills), apart from the starts users wait for (containers).
export const queueFamilies = ['accounts', 'containers', 'warm-pools', 'fleet', 'logs', 'mail', 'cache-purge'] as const
export type QueueFamily = (typeof queueFamilies)[number]

export interface EnqueueOptions {
  /** Same id, same job: a second enqueue with an id that exists is a no-op. */
  jobId?: string
  delayMs?: number
  retries?: number
  timeoutMs?: number
}

export interface JobContext {
  id: string
  /** No retry follows a failure of this attempt: the handler must leave a terminal state behind. */
  lastAttempt: boolean
  reportProgress (progress: number): Promise<void>
}

export interface JobDefinition<D = any> {
  family: QueueFamily
  name: string
  handle (data: D, ctx: JobContext): Promise<unknown>
}

/** One attempt at a job, as an interceptor sees it. */
export interface JobAttempt {
  family: QueueFamily
  name: string
  id: string
  lastAttempt: boolean
}

/**
 * Wraps every job attempt (metrics, tracing): `run` performs the attempt, and whatever the interceptor
 * returns or throws is the attempt's outcome, so it must return or rethrow what `run` gave it.
 */
export type JobInterceptor = (attempt: JobAttempt, run: () => Promise<unknown>) => Promise<unknown>

export interface QueueCounts { waiting: number, active: number, delayed: number, failed: number, succeeded: number }

export interface JobQueue {
  enqueue<D>(job: Pick<JobDefinition<D>, 'family' | 'name'>, data: D, options?: EnqueueOptions): Promise<string>
  counts (family: QueueFamily): Promise<QueueCounts>
}

/** Where the queue dashboard is, and the cookie `POST /v1/admin/queue-dashboard/session` sets for it. */
export const queueDashboard = { path: '/admin/queues', cookie: 'fractal_queues' } as const
