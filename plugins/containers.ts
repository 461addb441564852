import fp from 'fastify-plugin'
import { createContainerJobs } from '../services/containers/containers.jobs.js'
import { authenticateContainer, stopAllOf, type ContainerDeps } from '../services/containers/containers.service.js'
import { createSimulatedProvider, type CloudProvider } from '../services/containers/provider.js'

declare module 'fastify' {
  interface FastifyInstance {
    containerDeps: ContainerDeps
    cloudProvider: CloudProvider
  }
}

/** Wires the containers domain: the cloud provider, the start/stop jobs, and the containerSecret scheme. */
export default fp(async function containersPlugin (app) {
  const { config } = app
  const provider = createSimulatedProvider({ startDelayMs: config.containers.simulatedStartMs })
  app.decorate('cloudProvider', provider)
  app.decorate('containerDeps', { queue: app.queue })
  // A deleted account's containers are stopped before the account row goes.
  app.accountDeletionSteps.push((accountId) => stopAllOf(app.db, app.containerDeps, accountId))
  app.queue.define(...createContainerJobs({
    db: app.db,
    provider,
    callbackUrl: config.publicUrl ?? `http://${config.host}:${config.port}`,
    log: app.log
  }))

  // Containers call back with their own secret (X-Container-Secret), for the container named in the path.
  app.securityHandlers.containerSecret = async (request) => {
    const id = (request.params as { containerId?: string }).containerId ?? ''
    const secret = request.headers['x-container-secret']
    const container = await authenticateContainer(app.db, id, typeof secret === 'string' ? secret : undefined)
    request.container = container
  }
  app.decorateRequest('container', null)
}, { fastify: '5.x', name: 'containers', dependencies: ['config', 'db', 'queue', 'auth', 'accounts'] })

declare module 'fastify' {
  interface FastifyRequest {
    /** The calling container, once containerSecret accepted it. */
    container: import('../db/types.js').Container | null
  }
}
