import type { FastifyInstance } from 'fastify'

/**
 * A wait never shorter than this, whatever a caller asks: a deadline that holds on a quiet machine fails on a
 * loaded one (issue 20). What bounds a wait is the test's own time limit (tap's, 120 s), so a condition that
 * never holds fails as a timeout of that test, and one that holds late only makes it slower.
 */
export const minimumWaitMs = 100_000

/** Polls `check` every 25 ms until it holds (or `ms`, at least minimumWaitMs, pass); resolves whether it held. */
export async function until (check: () => boolean | Promise<boolean>, ms = minimumWaitMs): Promise<boolean> {
  const end = Date.now() + Math.max(ms, minimumWaitMs)
  while (Date.now() < end) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return false
}

/**
 * Lets something the test does not assert finish (a background refresh, say): polls `check` every 25 ms for at
 * most `ms`, then goes on whether or not it held. Never for an assertion (that is until()'s job, whose minimum
 * wait would turn a condition that may never hold into 100 s of nothing: test/edge/varnish.test.ts spent 100 of
 * its 120 s that way).
 */
export async function settle (check: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const end = Date.now() + ms
  while (Date.now() < end && !await check()) await new Promise((resolve) => setTimeout(resolve, 25))
}

/** Until the worker has sent every queued mail (or given up on it). */
export function mailDrained (app: FastifyInstance): Promise<boolean> {
  return until(async () => {
    const c = await app.queue.counts('mail')
    return c.waiting + c.active + c.delayed === 0
  })
}
