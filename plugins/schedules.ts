import { randomUUID } from 'node:crypto'
import fp from 'fastify-plugin'

export interface Schedule {
  name: string
  everyMs: number
  /** One pass; safe to run again at any time. What it returns is logged when it did something. */
  run (): Promise<Record<string, number>>
}

export interface Schedules {
  add (schedule: Schedule): void
  /** Starts every schedule (the worker role). */
  start (): void
  /** One pass of a schedule now, under its lock: false when another process holds it (or a pass is running here). */
  runOnce (name: string): Promise<Record<string, number> | false>
}

declare module 'fastify' {
  interface FastifyInstance {
    schedules: Schedules
  }
}

/**
 * Periodic work of the worker. With Redis, each pass takes a lock (SET NX PX, expiring by itself, so a
 * crashed worker never wedges it): one worker at a time runs a schedule, whatever the number of workers.
 * Without Redis there is one process, so no lock.
 */
export default fp(async function schedulesPlugin (app) {
  const schedules = new Map<string, Schedule>()
  const timers = new Set<NodeJS.Timeout>()
  const running = new Set<string>()
  const owner = randomUUID()
  let closed = false

  async function runOnce (name: string) {
    const schedule = schedules.get(name)
    if (!schedule) throw new Error(`schedules: no schedule named ${name}`)
    if (running.has(name)) return false
    if (app.hasDecorator('redis')) {
      const ttl = Math.max(1000, schedule.everyMs - 100)
      const key = `schedule-lock:${name}`
      // Taken for the whole interval (one pass per interval across workers); its owner may pass again.
      const got = await app.redis.set(key, owner, 'PX', ttl, 'NX')
      if (got !== 'OK' && (await app.redis.get(key)) !== owner) return false
    }
    running.add(name)
    const started = performance.now()
    try {
      const result = await schedule.run()
      const busy = Object.values(result).some((n) => n > 0)
      app.log[busy ? 'info' : 'debug']({ schedule: name, ...result, ms: Math.round(performance.now() - started) }, 'schedule pass')
      return result
    } finally {
      running.delete(name)
    }
  }

  const tick = (schedule: Schedule) => {
    if (closed) return
    // ±10 % jitter keeps workers started together from meeting at the lock every time.
    const t = setTimeout(() => {
      timers.delete(t)
      runOnce(schedule.name)
        .catch((err) => app.log.warn({ err, schedule: schedule.name }, 'schedule pass failed'))
        .finally(() => tick(schedule))
    }, Math.round(schedule.everyMs * (0.9 + Math.random() * 0.2)))
    timers.add(t)
  }

  app.decorate('schedules', {
    add (schedule: Schedule) {
      if (schedules.has(schedule.name)) throw new Error(`schedules: ${schedule.name} is defined twice`)
      schedules.set(schedule.name, schedule)
    },
    start () { for (const s of schedules.values()) tick(s) },
    runOnce
  } satisfies Schedules)
  app.addHook('onClose', async () => {
    closed = true
    for (const t of timers) clearTimeout(t)
  })
}, { fastify: '5.x', name: 'schedules', dependencies: ['config', 'redis'] })
