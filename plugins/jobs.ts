import fp from 'fastify-plugin'
import { createCacheJobs } from '../services/cache/cache.jobs.js'
import { createPurger } from '../services/cache/cache.purger.js'

/**
 * Gives the queue the infrastructure's job definitions: the edge cache's purge (every feature that changes
 * public data purges through app.cache). A feature's own jobs are defined by its plugin (routes/<feature>/feature.ts).
 */
export default fp(async function jobsPlugin (app) {
  app.queue.define(
    ...createCacheJobs({ purger: createPurger(app.config.cache.purger, app.log) })
  )
}, { fastify: '5.x', name: 'jobs', dependencies: ['queue', 'db'] })
