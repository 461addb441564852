import fp from 'fastify-plugin'
import { systemClock, type Clock } from '../services/clock.js'

declare module 'fastify' {
  interface FastifyInstance {
    /** The time lifetimes and windows are measured by (tests move it: `buildApp(config, { clock })`). */
    clock: Clock
  }
}

export default fp<{ clock?: Clock }>(async function clockPlugin (app, opts) {
  const clock = opts.clock ?? systemClock
  if (typeof clock.now !== 'function') throw new Error('clock: options.clock must have a now() method')
  app.decorate('clock', clock)
}, { fastify: '5.x', name: 'clock' })
