import { readFile } from 'node:fs/promises'
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import fastJsonStringify from 'fast-json-stringify'
import fp from 'fastify-plugin'
import type { FastifyInstance, FastifyReply, FastifyRequest, FastifySchema, RouteOptions } from 'fastify'
import { readContract, specPath, type Document } from '../openapi/spec.js'
import { DomainError } from '../services/errors.js'
import type { CachePolicy } from './edge-cache.js'
import { problemTypeBase } from './errors.js'

const addFormats = addFormatsModule.default

const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'] as const
// Response bodies Fastify serialises (fast-json-stringify): other types (text/plain) are sent as they are.
const jsonTypes = ['application/json', 'application/problem+json']

/** Who a limit counts: the client IP, or a verified credential of the request (its IP when it has none). */
const rateLimitKeys = ['ip', 'user', 'partnerKey', 'container'] as const
type RateLimitKey = (typeof rateLimitKeys)[number]

/**
 * `key`: one kind, or a list of kinds tried in order (the first credential that verifies counts, as for an
 * operation that takes a user token or a container secret). `failClosed`: while the limiter's store (Redis)
 * is away the operation answers 503 rather than going unlimited.
 */
interface RateLimitExtension { max: number, timeWindow: string | number, key?: RateLimitKey | RateLimitKey[], failClosed?: boolean }

/** One operation of the spec, resolved ($refs inlined) and turned into what Fastify needs. */
export interface Operation {
  operationId: string
  method: string
  path: string
  url: string
  tag: string
  /** Status codes the spec declares. */
  statuses: ReadonlySet<string>
  schema: FastifySchema
  bodyTypes: string[] | null
  bodyRequired: boolean
  security: Array<Record<string, string[]>>
  cache?: CachePolicy
  rateLimit?: RateLimitExtension
  /** `x-body-limit`: bytes, or the path of a byte count in the config (`logs.maxBytes`). */
  bodyLimit?: number | string
  /** `deprecated: true` with `x-deprecated-at` and `x-sunset` (dates): the headers every answer carries. */
  deprecation?: { deprecation: string, sunset: string }
  /** It answers `text/event-stream`: plugins/event-streams.ts caps how many are open (429). */
  eventStream: boolean
  /** `x-session-only: true`: a personal access token is refused (403) whatever its scopes (plugins/auth.ts). */
  sessionOnly: boolean
}

/** RFC 9745 `Deprecation` (@epoch seconds) and RFC 8594 `Sunset` (an HTTP date) of a deprecated operation. */
function deprecationOf (op: Record<string, any>): Operation['deprecation'] {
  if (!op.deprecated) return undefined
  const at = Date.parse(op['x-deprecated-at'] ?? '')
  const sunset = Date.parse(op['x-sunset'] ?? '')
  if (Number.isNaN(at) || Number.isNaN(sunset) || sunset <= at) {
    throw new Error(`operation ${op.operationId} is deprecated: it needs x-deprecated-at and a later x-sunset (dates), so that its callers are told when it goes`)
  }
  return { deprecation: `@${Math.floor(at / 1000)}`, sunset: new Date(sunset).toUTCString() }
}

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

function objectSchema (parameters: any[], lowerCase = false) {
  if (parameters.length === 0) return undefined
  const required = parameters.filter((p) => p.required).map((p) => lowerCase ? p.name.toLowerCase() : p.name)
  return {
    type: 'object',
    properties: Object.fromEntries(parameters.map((p) => [lowerCase ? p.name.toLowerCase() : p.name, { ...p.schema, ...(p.description ? { description: p.description } : {}) }])),
    ...(required.length > 0 ? { required } : {})
  }
}

/** The operations of a dereferenced document (openapi/spec.ts: every `$ref` inlined). */
function indexOperations (document: Record<string, any>): Map<string, Operation> {
  const operations = new Map<string, Operation>()
  for (const [path, item] of Object.entries<any>(document.paths ?? {})) {
    for (const method of methods) {
      const op = item[method]
      if (!op) continue
      if (!op.operationId || op.tags?.length !== 1) throw new Error(`openapi: ${method.toUpperCase()} ${path} needs an operationId and exactly one tag`)
      const parameters: any[] = [...(item.parameters ?? []), ...(op.parameters ?? [])]
      const byPlace = (place: string) => parameters.filter((p) => p.in === place)
      const content = op.requestBody?.content as Record<string, { schema?: unknown }> | undefined
      const response: Record<string, unknown> = {}
      for (const [status, r] of Object.entries<any>(op.responses ?? {})) {
        const json = Object.entries<any>(r.content ?? {}).filter(([type, c]) => jsonTypes.includes(type) && c.schema)
        if (json.length > 0) response[status] = { content: Object.fromEntries(json.map(([type, c]) => [type, { schema: c.schema }])) }
      }
      const schema: FastifySchema = {
        params: objectSchema(byPlace('path')),
        querystring: objectSchema(byPlace('query')),
        headers: objectSchema(byPlace('header'), true),
        // A binary body arrives as a Buffer: nothing for a JSON schema to check (its handler does).
        body: content ? { content: Object.fromEntries(Object.entries(content).map(([type, c]) => [type, { schema: (c.schema as { format?: string } | undefined)?.format === 'binary' ? {} : c.schema ?? {} }])) } : undefined,
        response: Object.keys(response).length > 0 ? response : undefined
      }
      for (const key of Object.keys(schema) as Array<keyof FastifySchema>) if (schema[key] === undefined) delete schema[key]
      const security = op.security ?? document.security ?? []
      // An authenticated answer in a shared cache is another user's data: refused unless it says private.
      if (op['x-cache'] && !op['x-cache'].private && security.some((r: object) => Object.keys(r).length > 0)) {
        throw new Error(`operation ${op.operationId} declares x-cache but also security: a shared cache would serve one user's answer to another (add private: true to cache it in the client only)`)
      }
      const eventStream = Object.values<any>(op.responses ?? {}).some((r) => r.content?.['text/event-stream'])
      if (eventStream && !op.responses['429']) {
        throw new Error(`operation ${op.operationId} answers text/event-stream but declares no 429: its streams are capped per user and per process`)
      }
      operations.set(op.operationId, {
        operationId: op.operationId,
        method: method.toUpperCase(),
        path,
        url: path.replace(/\{(\w+)\}/g, ':$1'),
        tag: op.tags[0],
        statuses: new Set(Object.keys(op.responses ?? {})),
        schema,
        bodyTypes: content ? Object.keys(content) : null,
        bodyRequired: Boolean(op.requestBody?.required),
        security,
        deprecation: deprecationOf(op),
        cache: op['x-cache'],
        rateLimit: op['x-rate-limit'],
        bodyLimit: op['x-body-limit'],
        eventStream,
        sessionOnly: op['x-session-only'] === true
      })
    }
  }
  return operations
}

function securityHook (app: FastifyInstance, requirements: Array<Record<string, string[]>>) {
  for (const requirement of requirements) {
    for (const scheme of Object.keys(requirement)) {
      if (!app.securityHandlers[scheme]) throw new Error(`security scheme ${scheme} has no handler in plugins/auth.ts`)
    }
  }
  // Requirements are alternatives (OR); the schemes inside one requirement must all pass (AND).
  // It runs as the request's first route hook after the rate limiter, before the body is read: a caller
  // who may not call the operation learns nothing of its validation, and costs us no body parsing.
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

function bodyLimitOf (app: FastifyInstance, operation: Operation): number {
  const limit = typeof operation.bodyLimit === 'string'
    ? operation.bodyLimit.split('.').reduce<unknown>((node, key) => (node as Record<string, unknown> | undefined)?.[key], app.config)
    : operation.bodyLimit
  if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1) {
    throw new Error(`openapi: x-body-limit of ${operation.operationId} is not a byte count (${String(operation.bodyLimit)})`)
  }
  return limit
}

/**
 * Fastify validates a body only when its content type has a schema: other types are refused outright (a
 * text/plain body never reaches a JSON handler unvalidated), and a required body must be there.
 */
function bodyGuard (operation: Operation) {
  const accepted = new Set(operation.bodyTypes)
  return async function checkBody (request: FastifyRequest) {
    const type = request.headers['content-type']?.split(';')[0]?.trim().toLowerCase()
    if (type && !accepted.has(type)) {
      throw Object.assign(new Error(`Send the body as ${[...accepted].join(' or ')}, not ${type}.`), { statusCode: 415 })
    }
    if (!type && operation.bodyRequired) {
      throw Object.assign(new Error('body is required'), {
        statusCode: 400,
        validation: [{ instancePath: '', message: 'is required', params: {} }],
        validationContext: 'body'
      })
    }
  }
}

/**
 * `key: user` counts per user: the limiter runs before the security handlers, so the key comes from the
 * bearer token verified here (once per request: the security handler reuses the outcome). `key: partnerKey`
 * counts per partner API key and `key: container` per container (X-Container-Id with its verified
 * X-Container-Secret), each verified once per request: the security handler reuses the outcome. A request
 * without a valid credential counts against its IP (and the security handler then answers 401); a caller
 * never picks its key, since an unverified id would let it spread over fresh budgets or spend another's.
 */
function rateLimitConfig (app: FastifyInstance, operationId: string, ext: RateLimitExtension) {
  // `app` is the instance the operation registers in: a caller's verifier (the containers feature's, for
  // `key: container`) is the one of the feature that registers it, wherever that feature registers.
  const callers: Record<Exclude<RateLimitKey, 'ip'>, (request: FastifyRequest) => Promise<string | null>> = {
    user: async (request) => {
      const claims = await app.bearerOf(request)
      return claims ? `u:${claims.sub}` : null
    },
    partnerKey: async (request) => {
      const key = await app.verifyPartnerKey(request)
      return key ? `pk:${key.keyId}` : null
    },
    container: async (request) => {
      const container = await app.verifyContainer(request)
      return container ? `c:${container.id}` : null
    }
  }
  const kinds = [ext.key ?? 'ip'].flat()
  const unknown = kinds.filter((kind) => !rateLimitKeys.includes(kind))
  if (unknown.length > 0) throw new Error(`openapi: x-rate-limit of ${operationId} has an unknown key ${unknown.join(', ')} (known: ${rateLimitKeys.join(', ')})`)
  if (kinds.includes('container') && !app.hasDecorator('verifyContainer')) throw new Error(`openapi: x-rate-limit of ${operationId} counts per container, but the containers feature is not registered before it`)
  const identify = kinds.filter((kind) => kind !== 'ip').map((kind) => callers[kind as Exclude<RateLimitKey, 'ip'>])
  return {
    max: ext.max,
    timeWindow: ext.timeWindow,
    ...(identify.length > 0
      ? {
          keyGenerator: async (request: FastifyRequest) => {
            for (const caller of identify) {
              const key = await caller(request)
              if (key) return key
            }
            return `ip:${request.ip}`
          }
        }
      : {}),
    // Overrides the plugin's skipOnError (plugins/rate-limit.ts) for this route only.
    ...(ext.failClosed && app.config.rateLimit.failClosed ? { skipOnError: false } : {})
  }
}

/** Test mode: every response body is checked against the schema the spec declares for its status. */
function responseValidator ({ ajv, compile }: SchemaCompiler, operation: Operation) {
  const validators = new Map<string, ValidateFunction>()
  for (const [status, response] of Object.entries<any>(operation.schema.response ?? {})) {
    for (const [type, content] of Object.entries<any>(response.content ?? {})) {
      validators.set(`${status} ${type}`, compile(content.schema))
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
    if (!operation.statuses.has(String(status))) {
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

// What every app of the process shares: the parsed document (per file and text) and the validators, each
// schema compiled once (keyed by its JSON: many operations share a body or a problem shape, and tests and the
// bench build many apps in one process). Compiling is most of start-up, so a validator or serialiser is
// compiled when its route first needs it, not at start: a process compiles what it serves (issue 21: start to
// ready, idle memory). A schema Ajv cannot compile then fails that request (500), and
// test/contract/spec.test.ts compiles every one, so none reaches a release.
const parsed = new Map<string, { text: string, document: Document, dereferenced: Document }>()

async function readDocument (path: string): Promise<{ document: Document, dereferenced: Document }> {
  const text = await readFile(path, 'utf8')
  let entry = parsed.get(path)
  if (entry?.text !== text) {
    entry = { text, ...await readContract(path) }
    parsed.set(path, entry)
  }
  // Copies: an app may change its document (the docs' servers), never its neighbours'.
  return { document: structuredClone(entry.document), dereferenced: structuredClone(entry.dereferenced) }
}

export interface SchemaCompiler { ajv: Ajv, compile (schema: object): ValidateFunction }
const compilers = new Map<string, SchemaCompiler>()

/** A validator that compiles on its first call (Fastify reads `errors` after each call, as from Ajv's). */
function lazyValidator (make: () => ValidateFunction): ValidateFunction {
  let validate: ValidateFunction | undefined
  const wrapper = function validateLazily (this: unknown, data: unknown) {
    validate ??= make()
    const valid = validate.call(this, data)
    wrapper.errors = validate.errors
    return valid
  } as ValidateFunction
  wrapper.errors = null
  return wrapper
}

export function sharedAjv (coerceTypes: boolean | 'array'): SchemaCompiler {
  const kind = String(coerceTypes)
  let compiler = compilers.get(kind)
  if (!compiler) {
    const ajv = new Ajv({ strict: false, allErrors: true, coerceTypes, useDefaults: true, removeAdditional: false })
    addFormats(ajv)
    const compiled = new Map<string, ValidateFunction>()
    compiler = {
      ajv,
      compile (schema) {
        return lazyValidator(() => {
          const key = JSON.stringify(schema)
          let validate = compiled.get(key)
          if (!validate) {
            validate = ajv.compile(schema)
            compiled.set(key, validate)
          }
          return validate
        })
      }
    }
    compilers.set(kind, compiler)
  }
  return compiler
}

const serializers = new Map<string, (data: unknown) => string>()

/** Fastify's own response serialiser (fast-json-stringify), each schema built once per process, on first use. */
export function sharedSerializer (schema: object): (data: unknown) => string {
  let serialize: ((data: unknown) => string) | undefined
  return function serializeLazily (data: unknown) {
    if (!serialize) {
      const key = JSON.stringify(schema)
      serialize = serializers.get(key)
      if (!serialize) {
        serialize = fastJsonStringify(schema)
        serializers.set(key, serialize)
      }
    }
    return serialize(data)
  }
}

/**
 * The contract pipeline at start-up: reads openapi.yaml once, resolves it, and lets each feature plugin
 * register its tag's operations (`app.registerOperations(tag, handlers)`) inside its own encapsulated
 * context, with the schemas, security, rate limit and cache policy the spec declares. An operation without
 * a handler, or a handler without an operation, stops start-up.
 *
 * fastify-openapi-glue does the same conversion but validates the whole document again (compiling the
 * OpenAPI meta-schema) on every registration: about 150 ms per tag. The spec is linted in CI instead.
 */
export default fp(async function openapiRoutesPlugin (app, options: { specPath?: string }) {
  const { document, dereferenced } = await readDocument(options.specPath ?? specPath)
  const operations = indexOperations(dereferenced)
  app.decorate('openapi', { document, operations })

  // Parameters arrive as strings and are coerced; bodies are not, and nothing is stripped silently.
  const bodyAjv = sharedAjv(false)
  const paramsAjv = sharedAjv('array')
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? bodyAjv : paramsAjv).compile(schema))
  const responseAjv = app.config.validateResponses ? sharedAjv(false) : null
  app.setSerializerCompiler(({ schema }) => sharedSerializer(schema as object))

  const registered = new Set<string>()
  app.decorate('registerOperations', function registerOperations (this: FastifyInstance, tag: string, handlers: Record<string, AnyHandler>) {
    for (const operationId of Object.keys(handlers)) {
      const operation = operations.get(operationId)
      if (!operation) throw new Error(`handler ${operationId} (routes/${tag}) has no operation in the spec`)
      if (operation.tag !== tag) throw new Error(`handler ${operationId} is in routes/${tag} but its operation is tagged ${operation.tag}`)
    }
    for (const operation of operations.values()) {
      if (operation.tag !== tag) continue
      const handler = handlers[operation.operationId]
      if (!handler) throw new Error(`operation ${operation.operationId} has no handler in routes/${tag}`)
      const secured = operation.security.some((r) => Object.keys(r).length > 0)
      const route: RouteOptions = {
        method: operation.method as RouteOptions['method'],
        url: operation.url,
        schema: operation.schema,
        handler,
        config: {
          operationId: operation.operationId,
          secured,
          ...(operation.sessionOnly ? { sessionOnly: true } : {}),
          ...(operation.eventStream ? { eventStream: true } : {}),
          ...(operation.cache ? { cache: operation.cache } : {}),
          ...(operation.rateLimit ? { rateLimit: rateLimitConfig(this, operation.operationId, operation.rateLimit) } : {})
        }
      }
      if (operation.bodyLimit !== undefined) route.bodyLimit = bodyLimitOf(app, operation)
      const guard = operation.bodyTypes ? bodyGuard(operation) : null
      const check = secured ? securityHook(app, operation.security) : null
      if (check && operation.security.some((r) => Object.keys(r).some((scheme) => app.securityHandlers[scheme]?.readsBody))) {
        route.preValidation = guard ? [check, guard] : [check]
      } else {
        if (check) route.preParsing = async function checkSecurity (request: FastifyRequest, _reply: FastifyReply, payload) { await check(request); return payload }
        if (guard) route.preValidation = guard
      }
      if (responseAjv) route.preSerialization = responseValidator(responseAjv, operation)
      if (operation.deprecation) {
        const { deprecation, sunset } = operation.deprecation
        route.onSend = async (_request, reply, payload) => {
          reply.header('deprecation', deprecation).header('sunset', sunset)
            .header('link', '</docs>; rel="deprecation"; type="text/html"')
          return payload
        }
      }
      this.route(route)
      registered.add(operation.operationId)
    }
  })

  app.addHook('onReady', async () => {
    const missing = [...operations.keys()].filter((id) => !registered.has(id)).sort()
    if (missing.length > 0) {
      throw new Error(`operation${missing.length > 1 ? 's' : ''} ${missing.join(', ')} ha${missing.length > 1 ? 've' : 's'} no handler: no feature plugin registered ${missing.length > 1 ? 'their tags' : 'its tag'}`)
    }
  })
}, { fastify: '5.x', name: 'openapi-routes', dependencies: ['config', 'auth', 'rate-limit', 'edge-cache', 'event-streams'] })
