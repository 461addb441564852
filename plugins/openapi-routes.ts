import { readFile } from 'node:fs/promises'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from 'fastify'
import fastifyOpenapiGlue from 'fastify-openapi-glue'
import { parse as parseYaml } from 'yaml'
import { specPath } from '../openapi/spec.js'
import { DomainError } from '../services/errors.js'
import type { CachePolicy } from './edge-cache.js'
import { problemTypeBase } from './errors.js'

const addFormats = addFormatsModule.default

const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'] as const

interface Operation {
  operationId: string
  method: string
  path: string
  tag: string
  responses: Record<string, unknown>
  security: Array<Record<string, string[]>>
  cache?: CachePolicy
  rateLimit?: RateLimitExtension
}

interface RateLimitExtension { max: number, timeWindow: string | number, key?: 'ip' | 'user' }

export interface OpenApiRegistry {
  /** The document as written (refs intact), for the docs plugin. */
  document: Record<string, any>
  operations: ReadonlyMap<string, Operation>
}

type AnyHandler = (request: any, reply: any) => Promise<unknown>

declare module 'fastify' {
  interface FastifyInstance {
    openapi: OpenApiRegistry
    /** Registers every operation of `tag` on this (encapsulated) instance, bound to `handlers` by operationId. */
    registerOperations (tag: string, handlers: Record<string, AnyHandler>): void
  }
  interface FastifyContextConfig {
    operationId?: string
  }
}

function securityHook (app: FastifyInstance, requirements: Array<Record<string, string[]>>) {
  for (const requirement of requirements) {
    for (const scheme of Object.keys(requirement)) {
      if (!app.securityHandlers[scheme]) throw new Error(`security scheme ${scheme} has no handler in plugins/auth.ts`)
    }
  }
  // Requirements are alternatives (OR); the schemes inside one requirement must all pass (AND).
  return async function checkSecurity (request: FastifyRequest) {
    let failure: unknown
    for (const requirement of requirements) {
      try {
        for (const [scheme, scopes] of Object.entries(requirement)) await app.securityHandlers[scheme]!(request, scopes)
        return
      } catch (err) {
        // Keep the most telling failure: forbidden (valid caller, wrong scope) beats unauthorized.
        if (!failure || (err instanceof DomainError && err.code === 'forbidden')) failure = err
      }
    }
    throw failure
  }
}

function rateLimitConfig (ext: RateLimitExtension) {
  return {
    max: ext.max,
    timeWindow: ext.timeWindow,
    ...(ext.key === 'user'
      ? { keyGenerator: (request: FastifyRequest) => request.principal ? `u:${request.principal.userId}` : `ip:${request.ip}` }
      : {})
  }
}

/** Test mode: every response body is checked against the schema the spec declares for its status. */
function responseValidator (ajv: Ajv, operation: Operation, responseSchemas: Record<string, any>) {
  const validators = new Map<string, ValidateFunction>()
  for (const [status, response] of Object.entries<any>(responseSchemas)) {
    for (const [type, content] of Object.entries<any>(response.content ?? {})) {
      if (content.schema) validators.set(`${status} ${type}`, ajv.compile(content.schema))
    }
  }
  // A mismatch becomes a 500 problem naming it (test mode only), so the test that caused it fails.
  const mismatch = (request: FastifyRequest, reply: FastifyReply, detail: string) => {
    request.log.error({ operationId: operation.operationId }, detail)
    reply.code(500).type('application/problem+json')
    return { type: `${problemTypeBase}internal`, title: 'Response does not match the spec', status: 500, code: 'internal', detail }
  }
  return async function validateResponse (request: FastifyRequest, reply: FastifyReply, payload: unknown) {
    const status = reply.statusCode
    if (status >= 500) return payload
    if (!(String(status) in operation.responses)) {
      return mismatch(request, reply, `response ${status} of ${operation.operationId} is not declared in the spec`)
    }
    const type = String(reply.getHeader('content-type') ?? 'application/json').split(';')[0]!
    const validate = validators.get(`${status} ${type}`)
    if (validate && !validate(payload)) {
      return mismatch(request, reply, `response ${status} of ${operation.operationId} does not match the spec: ${ajv.errorsText(validate.errors)}`)
    }
    return payload
  }
}

function indexOperations (document: Record<string, any>): Map<string, Operation> {
  const operations = new Map<string, Operation>()
  for (const [path, item] of Object.entries<any>(document.paths ?? {})) {
    for (const method of methods) {
      const op = item[method]
      if (!op) continue
      if (!op.operationId || op.tags?.length !== 1) throw new Error(`openapi: ${method.toUpperCase()} ${path} needs an operationId and exactly one tag`)
      operations.set(op.operationId, {
        operationId: op.operationId,
        method,
        path,
        tag: op.tags[0],
        responses: op.responses ?? {},
        security: op.security ?? document.security ?? [],
        cache: op['x-cache'],
        rateLimit: op['x-rate-limit']
      })
    }
  }
  return operations
}

/** The document with only the paths of one tag, for glue to register inside that tag's plugin. */
function documentForTag (document: Record<string, any>, tag: string): Record<string, any> {
  const paths: Record<string, any> = {}
  for (const [path, item] of Object.entries<any>(document.paths ?? {})) {
    const kept = Object.fromEntries(Object.entries<any>(item).filter(([key, op]) =>
      !(methods as readonly string[]).includes(key) || op.tags?.[0] === tag))
    if (methods.some((m) => m in kept)) paths[path] = kept
  }
  return { ...document, paths }
}

export default fp(async function openapiRoutesPlugin (app) {
  const document = parseYaml(await readFile(specPath, 'utf8'))
  const operations = indexOperations(document)
  app.decorate('openapi', { document, operations })

  // Parameters arrive as strings and are coerced; bodies are not, and nothing is stripped silently.
  const makeAjv = (coerceTypes: boolean | 'array') => {
    const instance = new Ajv({ strict: false, allErrors: true, coerceTypes, useDefaults: true, removeAdditional: false })
    addFormats(instance)
    return instance
  }
  const bodyAjv = makeAjv(false)
  const paramsAjv = makeAjv('array')
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : paramsAjv).compile(schema))

  // Clients never send problem documents; glue warns about every response type it cannot parse.
  app.addContentTypeParser('application/problem+json', (_request, _payload, done) => {
    done(Object.assign(new Error('Problem documents are not accepted as request bodies.'), { statusCode: 415 }), undefined)
  })

  // Fastify validates a body only when its content type has a schema: refuse the other types outright,
  // so a text/plain body never reaches a JSON handler unvalidated.
  app.addHook('onRoute', (route) => {
    const content = (route.schema?.body as { content?: Record<string, unknown> } | undefined)?.content
    if (!content) return
    const accepted = new Set(Object.keys(content))
    const hooks = route.preValidation ? [route.preValidation].flat() : []
    route.preValidation = [...hooks, async (request: FastifyRequest) => {
      const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase()
      if (type && !accepted.has(type)) {
        throw Object.assign(new Error(`Send the body as ${[...accepted].join(' or ')}, not ${type}.`), { statusCode: 415 })
      }
    }]
  })

  if (app.config.validateResponses) {
    const responseAjv = makeAjv(false)
    // glue hands Fastify the resolved response schemas; compile them once per route as it is added.
    app.addHook('onRoute', (route) => {
      const operation = route.config?.operationId ? operations.get(route.config.operationId) : undefined
      if (!operation || route.method === 'HEAD') return
      const hooks = route.preSerialization ? [route.preSerialization].flat() : []
      route.preSerialization = [...hooks, responseValidator(responseAjv, operation, (route.schema as any)?.response ?? {})]
    })
  }

  const registered = new Set<string>()
  app.decorate('registerOperations', function registerOperations (this: FastifyInstance, tag: string, handlers: Record<string, AnyHandler>) {
    for (const operationId of Object.keys(handlers)) {
      const operation = operations.get(operationId)
      if (!operation) throw new Error(`handler ${operationId} (routes/${tag}) has no operation in the spec`)
      if (operation.tag !== tag) throw new Error(`handler ${operationId} is in routes/${tag} but its operation is tagged ${operation.tag}`)
    }
    const security = (operation: Operation) => operation.security.some((r) => Object.keys(r).length > 0)
    this.register(fastifyOpenapiGlue, {
      specification: documentForTag(document, tag),
      operationResolver: (operationId: string) => {
        const operation = operations.get(operationId)!
        const handler = handlers[operationId]
        if (!handler) throw new Error(`operation ${operationId} has no handler in routes/${tag}`)
        registered.add(operationId)
        const secured = security(operation)
        return {
          handler,
          config: {
            operationId,
            secured,
            ...(operation.cache ? { cache: operation.cache } : {}),
            ...(operation.rateLimit ? { rateLimit: rateLimitConfig(operation.rateLimit) } : {})
          },
          ...(secured ? { preHandler: securityHook(app, operation.security) } : {})
        } as unknown as RouteOptions
      }
    })
  })

  app.addHook('onReady', async () => {
    const missing = [...operations.keys()].filter((id) => !registered.has(id)).sort()
    if (missing.length > 0) {
      throw new Error(`operation${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ha${missing.length > 1 ? 've' : 's'} no handler: no feature plugin registered ${missing.length > 1 ? 'their tags' : 'its tag'}`)
    }
  })
}, { fastify: '5.x', name: 'openapi-routes', dependencies: ['config', 'auth', 'rate-limit', 'edge-cache'] })
