import fp from 'fastify-plugin'
import { createCacheJobs } from '../services/cache/cache.jobs.js'
import { createPurger } from '../services/cache/cache.purger.js'

/** Gives the queue every job definition, built with the dependencies it needs. */
export default fp(async function jobsPlugin (app) {
  app.queue.define(
    ...createCacheJobs({ purger: createPurger(app.config.cache.purger, app.log) })
  )
}, { fastify: '5.x', name: 'jobs', dependencies: ['queue', 'db'] })
