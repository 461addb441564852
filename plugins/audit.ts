import fp from 'fastify-plugin'
import { auditContext } from '../services/audit/audit.service.js'

/**
 * Every request runs inside its audit context (client address honouring TRUST_PROXY, user agent), so
 * that the audit rows services write say from where without each service being handed it.
 */
export default fp(async function auditPlugin (app) {
  app.addHook('onRequest', (request, _reply, done) => {
    auditContext.run({ ip: request.ip ?? null, userAgent: request.headers['user-agent']?.slice(0, 512) ?? null }, done)
  })
}, { fastify: '5.x', name: 'audit' })
