import type { FastifyInstance } from 'fastify'

/** Polls `check` every 25 ms until it holds or `ms` pass; resolves whether it held. */
export async function until (check: () => boolean | Promise<boolean>, ms = 10000): Promise<boolean> {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (await check()) return true
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  return false
}

/** Until the worker has sent every queued mail (or given up on it). */
export function mailDrained (app: FastifyInstance): Promise<boolean> {
  return until(async () => {
    const c = await app.queue.counts('mail')
    return c.waiting + c.active + c.delayed === 0
  })
}
