// Property-based fuzzing of the contract (used by test/fuzz/operations.test.ts). The operations are read from
// openapi.yaml at run time ($refs resolved by openapi/spec.ts, as for the app's routes); fast-check arbitraries are
// derived from each operation's parameter and body schemas: valid-ish requests (to get past validation and
// into the handlers), then mutations (wrong types, bounds, huge strings, deep JSON, bad UTF-8, NUL bytes,
// unicode edge cases, unknown and missing properties, wrong content types, duplicated and garbage headers,
// missing or garbage credentials, garbage path ids). An oracle, built from the same schemas with the same Ajv
// settings as the app, says which requests the contract guarantees to refuse (and why).
import { Ajv, type ValidateFunction } from 'ajv'
import addFormatsModule from 'ajv-formats'
import fc from 'fast-check'
import { readDereferencedSpec } from '../../openapi/spec.js'

const addFormats = addFormatsModule.default

export type Schema = Record<string, any>
export type Place = 'path' | 'query' | 'header'

export interface Param { name: string, in: Place, required: boolean, schema: Schema }
export interface BodyContent { type: string, schema: Schema }

export interface SpecOperation {
  operationId: string
  method: string
  path: string
  params: Param[]
  body: { required: boolean, contents: BodyContent[] } | null
  security: Array<Record<string, string[]>>
  secured: boolean
  statuses: ReadonlySet<string>
  bodyLimit: number | string | undefined
}

// ---- The spec ---------------------------------------------------------------------------------------------

const methods = ['get', 'put', 'post', 'patch', 'delete'] as const

export async function loadOperations (file: string): Promise<SpecOperation[]> {
  // The app's own dereferencing (openapi/spec.ts): the fuzzer sees the schemas the app validates with.
  const document = await readDereferencedSpec(file)
  const operations: SpecOperation[] = []
  for (const [path, item] of Object.entries<any>(document.paths ?? {})) {
    for (const method of methods) {
      const op = item[method]
      if (!op) continue
      const params = [...(item.parameters ?? []), ...(op.parameters ?? [])]
        .filter((p: any) => ['path', 'query', 'header'].includes(p.in))
        .map((p: any): Param => ({ name: p.name, in: p.in, required: Boolean(p.required), schema: p.schema ?? {} }))
      const content = op.requestBody?.content as Record<string, { schema?: Schema }> | undefined
      const security = op.security ?? document.security ?? []
      operations.push({
        operationId: op.operationId,
        method: method.toUpperCase(),
        path,
        params,
        body: content ? { required: Boolean(op.requestBody.required), contents: Object.entries(content).map(([type, c]) => ({ type, schema: c.schema ?? {} })) } : null,
        security,
        secured: security.some((r: object) => Object.keys(r).length > 0),
        statuses: new Set(Object.keys(op.responses ?? {})),
        bodyLimit: op['x-body-limit']
      })
    }
  }
  return operations
}

// ---- Requests ---------------------------------------------------------------------------------------------

/** A piece of JSON text put into a body as it is (`1e400`, `-0`, 50,000 nested arrays). */
export class RawJson {
  constructor (readonly text: string) {}
}

export type Body =
  | { kind: 'none', contentType?: string }
  | { kind: 'json', value: unknown, contentType: string }
  | { kind: 'bytes', bytes: Buffer, contentType?: string }

/** proper: the credential the operation needs; none; garbage (`variant` picks the attack); a token without the scope; the header twice. */
export type AuthMode = 'proper' | 'none' | 'garbage' | 'wrongScope' | 'duplicated'

export interface Draft {
  /** Path parameters: the value, percent-encoded when the request is built unless `raw`. */
  path: Record<string, { value: string, raw?: boolean }>
  /** Query pairs, encoded when built; repeated keys repeat. */
  query: Array<[string, string]>
  /** Appended to the query string as it is. */
  rawQuery?: string
  headers: Record<string, string | string[]>
  auth: { mode: AuthMode, requirement: number, garbage: string, variant: number }
  body: Body
  notes: string[]
}

export interface BuiltRequest {
  method: string
  url: string
  headers: Record<string, string | string[]>
  payload?: Buffer
}

const loneSurrogate = /([\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff])/
/**
 * Percent-encoding as a sloppy client does it: a lone surrogate (which encodeURIComponent refuses) becomes
 * the three bytes of its code unit (CESU-8), not valid UTF-8.
 */
export function encodeLoose (value: string): string {
  let out = ''
  for (const piece of value.split(loneSurrogate)) {
    if (piece.length === 1 && /^[\ud800-\udfff]$/.test(piece)) {
      const c = piece.charCodeAt(0)
      out += [0xe0 | (c >> 12), 0x80 | ((c >> 6) & 0x3f), 0x80 | (c & 0x3f)].map((b) => `%${b.toString(16).toUpperCase()}`).join('')
    } else {
      out += encodeURIComponent(piece)
    }
  }
  return out
}

/** What the server's decoding makes of an encoded component: undefined when it cannot decode it. */
export function decoded (encoded: string): string | undefined {
  try { return decodeURIComponent(encoded) } catch { return undefined }
}

/**
 * A header value as Node hands it over: the UTF-8 bytes a client sends, read as Latin-1; control characters
 * other than tab are left out (Node's parser refuses a request holding them before the app sees it).
 */
// eslint-disable-next-line no-control-regex -- the control characters are what is removed
export const asHeader = (value: string) => Buffer.from(value, 'utf8').toString('latin1').replace(/[\u0000-\u0008\u000a-\u001f\u007f]/g, '')

/** JSON text of a value that may hold RawJson pieces (own `__proto__` keys included). */
export function jsonText (value: unknown): string {
  if (value instanceof RawJson) return value.text
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`
  if (value !== null && typeof value === 'object') {
    return `{${Object.keys(value).map((k) => `${JSON.stringify(k)}:${jsonText((value as Record<string, unknown>)[k])}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

export function bodyBytes (body: Body): Buffer | undefined {
  if (body.kind === 'none') return undefined
  if (body.kind === 'bytes') return body.bytes
  return Buffer.from(jsonText(body.value), 'utf8')
}

/** Sets a key as an own property, even `__proto__`. */
export function withKey (object: Record<string, unknown>, key: string, value: unknown): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (const k of Object.keys(object)) Object.defineProperty(copy, k, { value: object[k], enumerable: true, writable: true, configurable: true })
  Object.defineProperty(copy, key, { value, enumerable: true, writable: true, configurable: true })
  return copy
}

export function withoutKey (object: Record<string, unknown>, key: string): Record<string, unknown> {
  const copy: Record<string, unknown> = {}
  for (const k of Object.keys(object)) if (k !== key) Object.defineProperty(copy, k, { value: object[k], enumerable: true, writable: true, configurable: true })
  return copy
}

// ---- Values -----------------------------------------------------------------------------------------------

const KB100 = 100 * 1024
/** Characters that break naive code: controls, NUL, bidi overrides, zero-width, lone surrogates, combining marks, emoji sequences. */
export const edgeChars = ['\u0000', '\u0001', '\u0008', '\u001b', '\u007f', '\u0085', '\u00a0', '\u00ad', '\u200b', '\u200d', '\u202e', '\u2028', '\u2029',
  '\ufeff', '\ufffd', '\uffff', '\ud800', '\udfff', '\ud83d\ude00', 'e\u0301', '\u0301', '\ud83d\udc69\u200d\ud83d\udc69\u200d\ud83d\udc67', '\ud83c\uddeb\ud83c\uddf7',
  'İ', 'ß', 'ﬃ', 'Ω', '𝔘', '%', '%00', '%s', '\\', '"', "'", '`', '<', '>', '&', '/', '..', '\r\n', '\n', '\t', ' ', '${', '{{', '$', '*', '?', '#', ';', '--', '\\u0000']
const edgeUnit = fc.oneof(
  { weight: 6, arbitrary: fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }) },
  { weight: 2, arbitrary: fc.constantFrom(...edgeChars) }
)
/** Text of min to max units, each an ASCII character, any grapheme or an edge character. */
export const text = (minLength = 0, maxLength = 24) => fc.string({ unit: edgeUnit, minLength, maxLength })

/** Strings of about 100 KB: one character repeated, NULs, emoji, a mixture. */
export const hugeStrings = [
  'a'.repeat(KB100),
  '\u0000'.repeat(KB100),
  '\ud83d\ude00'.repeat(KB100 / 2),
  'é\u202e\u200b"\\'.repeat(KB100 / 5),
  Array.from({ length: KB100 / 8 }, (_, i) => `x${i.toString(36)}`).join('').slice(0, KB100)
]
export const huge = fc.constantFrom(...hugeStrings)

/** Nested arrays or objects, `depth` deep, as raw JSON text (a serializer would recurse that deep). */
export const deepJson = fc.tuple(fc.constantFrom(1_000, 5_000, 50_000), fc.constantFrom('array', 'object')).map(([depth, kind]) =>
  new RawJson(kind === 'array' ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth)))

export const numberEdges = [0, -1, 1, 2 ** 31 - 1, 2 ** 31, -(2 ** 31) - 1, 2 ** 32, 2 ** 53 - 1, 2 ** 53, -(2 ** 53), 2 ** 63, 1e20, 1e300, -1e300, 0.1, 1.5, Number.MIN_VALUE]
const rawNumbers = ['1e400', '-1e400', '-0', '1.0', '1e2', '0.1e1', '100000000000000000000000000000', '-0.0', '1E+2', '5e-324']
const wrongTypes = fc.constantFrom<unknown>(null, true, false, 0, -1, 1.5, '', 'x', 'true', '1', [], {}, [1], { a: 1 }, [null], ['x'])

const formatGarbage: Record<string, string[]> = {
  uuid: ['', 'x', '00000000-0000-0000-0000-00000000000', '00000000-0000-0000-0000-0000000000000', '{00000000-0000-0000-0000-000000000000}', 'gggggggg-gggg-gggg-gggg-gggggggggggg',
    '00000000000000000000000000000000', '00000000-0000-0000-0000-000000000000\u0000', ' 00000000-0000-0000-0000-000000000000', "' OR '1'='1", '../../etc/passwd', '1', 'null'],
  email: ['', 'x', '@', 'a@', '@b.c', 'a@@b.c', 'a b@c.d', 'a@b..c', `${'a'.repeat(250)}@b.co`, 'a@b.c\u0000', '"a"@b', '<a@b.c>', 'a@-b.c'],
  uri: ['', 'x', '://', 'http//x', 'javascript:alert(1)x y', ' http://x', 'http://[::1', '\u0000'],
  'date-time': ['', 'x', '2026-13-01T00:00:00Z', '2026-02-30T00:00:00Z', '2026-01-01', '2026-01-01T25:00:00Z', '2026-01-01T00:00:00', '0000-00-00T00:00:00Z', '9999999-01-01T00:00:00Z', '1e10'],
  date: ['', 'x', '2026-13-01', '2026-02-30', '20260101'],
  ipv4: ['', '256.0.0.1', '1.2.3', '1.2.3.4.5', '01.2.3.4', 'localhost', '::1'],
  ipv6: ['', ':::', '1::2::3', 'g::1', '1.2.3.4']
}

// ---- Schemas → arbitraries ----------------------------------------------------------------------------------

function typeOf (schema: Schema): string | string[] | undefined {
  return schema.type ?? (schema.properties ? 'object' : schema.items ? 'array' : undefined)
}

const codePoints = (s: string) => [...s].length

export interface Generation {
  /** Values that exist (ids, codes, secrets), by lower-cased field name: picked half the time. */
  pools: Record<string, readonly unknown[]>
  /** Replaces the arbitrary of a field: `operationId.field`. */
  overrides: Record<string, fc.Arbitrary<unknown>>
}

export class Arbitraries {
  constructor (private readonly gen: Generation) {}

  private pooled (name: string | undefined, made: fc.Arbitrary<unknown>): fc.Arbitrary<unknown> {
    const pool = name ? this.gen.pools[name.toLowerCase()] : undefined
    return pool?.length ? fc.oneof(fc.constantFrom(...pool), made) : made
  }

  /** Valid-ish values of a schema (pool values mixed in by field name). */
  valid (schema: Schema, name?: string, opId?: string, depth = 0): fc.Arbitrary<unknown> {
    const override = opId && name ? this.gen.overrides[`${opId}.${name}`] : undefined
    if (override) return override
    return this.pooled(name, this.generate(schema, opId, depth))
  }

  private generate (schema: Schema, opId: string | undefined, depth: number): fc.Arbitrary<unknown> {
    if ('const' in schema) return fc.constant(schema.const)
    if (Array.isArray(schema.enum)) return fc.constantFrom(...schema.enum)
    const branches: Schema[] | undefined = schema.oneOf ?? schema.anyOf
    if (branches?.length) return fc.oneof(...branches.map((b) => this.generate(b, opId, depth)))
    if (Array.isArray(schema.allOf)) {
      const merged = schema.allOf.reduce((all: Schema, s: Schema) => ({ ...all, ...s, properties: { ...all.properties, ...s.properties }, required: [...(all.required ?? []), ...(s.required ?? [])] }), {})
      return this.generate(merged, opId, depth)
    }
    const type = typeOf(schema)
    if (Array.isArray(type)) return fc.oneof(...type.map((t) => this.generate({ ...schema, type: t }, opId, depth)))
    if (depth > 6) return fc.constant(null)
    switch (type) {
      case 'string': return validString(schema)
      case 'integer': return validNumber(schema, true)
      case 'number': return validNumber(schema, false)
      case 'boolean': return fc.boolean()
      case 'null': return fc.constant(null)
      case 'array': {
        const items = schema.items ?? {}
        const minLength = schema.minItems ?? 0
        let maxLength = Math.min(schema.maxItems ?? minLength + 4, minLength + 4)
        if (Array.isArray(items.enum) && schema.uniqueItems) maxLength = Math.min(maxLength, items.enum.length)
        const item = this.generate(items, opId, depth + 1)
        return schema.uniqueItems
          ? fc.uniqueArray(item, { minLength, maxLength, selector: (v) => JSON.stringify(v) })
          : fc.array(item, { minLength, maxLength })
      }
      case 'object': {
        const properties: Record<string, Schema> = schema.properties ?? {}
        const model = Object.fromEntries(Object.entries(properties).map(([k, s]) => [k, this.valid(s, k, depth === 0 ? opId : undefined, depth + 1)]))
        const requiredKeys = (schema.required ?? []).filter((k: string) => k in properties)
        let arb: fc.Arbitrary<Record<string, unknown>> = fc.record(model, { requiredKeys })
        if (schema.minProperties) arb = arb.filter((o) => Object.keys(o).length >= schema.minProperties)
        return arb
      }
      default: return fc.jsonValue({ maxDepth: 2 })
    }
  }

  /** Values likely to break a schema (the oracle decides whether they do). */
  breaking (schema: Schema): fc.Arbitrary<unknown> {
    const options: Array<fc.Arbitrary<unknown>> = [wrongTypes, deepJson, fc.constantFrom(...rawNumbers).map((t) => new RawJson(t))]
    const type = typeOf(schema)
    const branches: Schema[] = schema.oneOf ?? schema.anyOf ?? []
    for (const branch of branches) options.push(this.breaking(branch))
    if ('const' in schema || Array.isArray(schema.enum)) {
      const allowed: unknown[] = 'const' in schema ? [schema.const] : schema.enum
      options.push(text(0, 12).filter((s) => !allowed.includes(s)))
      const variants = allowed.filter((v): v is string => typeof v === 'string').flatMap((v) => [v.toUpperCase(), ` ${v}`, `${v}\u0000`, `${v},${v}`]).filter((s) => !allowed.includes(s))
      if (variants.length) options.push(fc.constantFrom(...variants))
    }
    if (type === 'string') {
      const { minLength, maxLength, pattern, format } = schema
      if (maxLength !== undefined) options.push(fc.constant('x'.repeat(maxLength + 1)), fc.constant('\ud83d\ude00'.repeat(maxLength + 1)))
      if (maxLength === undefined || maxLength < KB100) options.push(huge)
      if (minLength) options.push(fc.constant('x'.repeat(minLength - 1)), fc.constant(''))
      if (pattern) {
        const re = new RegExp(pattern, 'u')
        options.push(fc.oneof(text(0, 16), fc.constantFrom('', ' ', '\t\n', 'A B', '\u0000', 'ä', '../x', '-', '_')).filter((s) => !re.test(s)))
      }
      if (format && formatGarbage[format]) options.push(fc.constantFrom(...formatGarbage[format]!))
    }
    if (type === 'integer' || type === 'number') {
      const { minimum, maximum } = schema
      if (minimum !== undefined) options.push(fc.constantFrom(minimum - 1, minimum - 0.5, minimum - 1e9))
      if (maximum !== undefined) options.push(fc.constantFrom(maximum + 1, maximum + 0.5, maximum * 1e9 + 1))
      if (type === 'integer') options.push(fc.constantFrom(0.5, 1.000001, -2.5))
      options.push(fc.constantFrom('1', '0', 'NaN', ''))
    }
    if (type === 'boolean') options.push(fc.constantFrom('true', 'false', 0, 1, 'yes'))
    if (type === 'array') {
      const { maxItems, minItems, items } = schema
      if (maxItems !== undefined && maxItems < 2000) options.push(fc.constant(Array.from({ length: maxItems + 1 }, (_, i) => `i${i}`)))
      if (minItems) options.push(fc.constant([]))
      if (items) options.push(this.breaking(items).map((v) => [v]))
      if (schema.uniqueItems && items) options.push(this.valid(items).map((v) => [v, v]))
    }
    if (type === 'object') {
      const properties: Record<string, Schema> = schema.properties ?? {}
      options.push(fc.constant({}), fc.constant([]))
      const keys = Object.keys(properties)
      if (keys.length) options.push(fc.constantFrom(...keys).chain((k) => this.breaking(properties[k]!).map((v) => withKey({}, k, v))))
    }
    return fc.oneof(...options)
  }

  /** Values of a parameter as the client would write them (strings), valid-ish. */
  validParam (param: Param, opId: string): fc.Arbitrary<string> {
    return this.valid(param.schema, param.name, opId).map(paramString)
  }

  /** Parameter strings likely to break its schema. */
  breakingParam (param: Param): fc.Arbitrary<string> {
    const options: Array<fc.Arbitrary<string>> = [
      fc.constantFrom('', ' ', 'null', 'undefined', 'true', '-1', '0', '1.5', '1e3', '0x1F', 'NaN', 'Infinity', '9'.repeat(400), "' OR 1=1 --", '<script>', '{}', '[]', ',', '\u0000', '../../etc/passwd', '\ud800', '%', '\u202e', '😀'),
      this.breaking(param.schema).filter((v) => !(v instanceof RawJson) && (typeof v !== 'object' || v === null)).map(paramString)
    ]
    // Path parameters longer than the router's limit (200) never reach validation; query and headers take 100 KB.
    if (param.in !== 'path') options.push(huge)
    return fc.oneof(...options)
  }
}

function paramString (v: unknown): string {
  return typeof v === 'string' ? v : v === null ? 'null' : typeof v === 'object' ? JSON.stringify(v) : String(v)
}

function validString (schema: Schema): fc.Arbitrary<string> {
  const min: number = schema.minLength ?? 0
  const max: number = schema.maxLength ?? Infinity
  const fits = (s: string) => { const n = codePoints(s); return n >= min && n <= max }
  switch (schema.format) {
    case 'uuid': return fc.uuid()
    case 'email': return fc.oneof(fc.emailAddress(), fc.constantFrom('a@b.co', 'ÄÖ@exämple.test', 'x+tag@example.test')).filter(fits)
    case 'uri': case 'url': return fc.webUrl().filter(fits)
    case 'date-time': return fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString())
    case 'date': return fc.date({ min: new Date('1970-01-01T00:00:00Z'), max: new Date('2200-01-01T00:00:00Z'), noInvalidDate: true }).map((d) => d.toISOString().slice(0, 10))
    case 'ipv4': return fc.ipV4()
    case 'ipv6': return fc.ipV6()
    case 'binary': return text(0, 64)
  }
  if (schema.pattern) {
    // fast-check's matches are short: one too short for minLength is repeated (`^[a-z]+$` still matches).
    const re = new RegExp(schema.pattern, 'u')
    const longer = (s: string) => {
      if (codePoints(s) >= min || s.length === 0) return s
      const repeated = s.repeat(Math.ceil(min / codePoints(s)))
      return re.test(repeated) ? repeated : s
    }
    return fc.stringMatching(re).map(longer).filter(fits)
  }
  const options: Array<fc.WeightedArbitrary<string>> = [{ weight: 8, arbitrary: text(min, Math.min(max, min + 24)).filter(fits) }]
  // Boundaries: exactly the longest (in code points, as Ajv counts), and 100 KB where no maximum says otherwise.
  if (Number.isFinite(max)) options.push({ weight: 1, arbitrary: fc.constantFrom('x', '\u0000', '\ud83d\ude00', 'é', '\u202e').map((c) => c.repeat(max)) })
  else options.push({ weight: 1, arbitrary: huge })
  if (min > 0) options.push({ weight: 1, arbitrary: fc.constantFrom('x', '\ud83d\ude00', ' ').map((c) => c.repeat(min)) })
  return fc.oneof(...options)
}

function validNumber (schema: Schema, integer: boolean): fc.Arbitrary<number> {
  const lo: number | undefined = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum + (integer ? 1 : Number.EPSILON) : undefined)
  const hi: number | undefined = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum - (integer ? 1 : Number.EPSILON) : undefined)
  const inside = (n: number) => (lo === undefined || n >= lo) && (hi === undefined || n <= hi) && (!integer || Number.isInteger(n))
  const edges = [lo, hi, lo !== undefined ? lo + 1 : undefined, hi !== undefined ? hi - 1 : undefined, ...numberEdges].filter((n): n is number => n !== undefined && inside(n))
  const range = integer
    ? fc.integer({ min: Math.max(lo ?? -1e6, Number.MIN_SAFE_INTEGER), max: Math.min(hi ?? 1e6, Number.MAX_SAFE_INTEGER) })
    : fc.double({ min: lo ?? -1e6, max: hi ?? 1e6, noNaN: true, noDefaultInfinity: true })
  return edges.length ? fc.oneof({ weight: 3, arbitrary: range }, { weight: 1, arbitrary: fc.constantFrom(...edges) }) : range
}

// ---- The oracle -------------------------------------------------------------------------------------------

/** Node keeps only the first of these when a request repeats them (light-my-request does the same). */
const singleValueHeaders = new Set(['age', 'authorization', 'content-length', 'content-type', 'etag', 'expires', 'from', 'host', 'if-modified-since',
  'if-unmodified-since', 'last-modified', 'location', 'max-forwards', 'proxy-authorization', 'referer', 'retry-after', 'server', 'user-agent'])

export function headerValue (name: string, value: string | string[] | undefined): string | undefined {
  if (!Array.isArray(value)) return value
  return singleValueHeaders.has(name.toLowerCase()) ? value[0] : value.join(name.toLowerCase() === 'cookie' ? '; ' : ', ')
}

const isJsonType = (type: string) => type === 'application/json' || type.endsWith('+json')

/** Which requests the contract refuses for sure: the app's own Ajv settings, applied to the request as sent. */
export class Oracle {
  private readonly bodyAjv = makeAjv(false)
  private readonly paramsAjv = makeAjv('array')
  private readonly validators = new Map<string, ValidateFunction>()

  constructor (private readonly bodyLimitOf: (op: SpecOperation) => number) {}

  private validator (key: string, schema: Schema, params: boolean): ValidateFunction {
    let v = this.validators.get(key)
    if (!v) {
      v = (params ? this.paramsAjv : this.bodyAjv).compile(schema)
      this.validators.set(key, v)
    }
    return v
  }

  /** Why the request must be refused, or null when it may be accepted. */
  refusal (op: SpecOperation, draft: Draft): string | null {
    if (op.secured && ['none', 'garbage', 'wrongScope'].includes(draft.auth.mode)) return `credentials: ${draft.auth.mode}`
    return this.paramRefusal(op, draft) ?? this.bodyRefusal(op, draft)
  }

  private paramRefusal (op: SpecOperation, draft: Draft): string | null {
    for (const place of ['path', 'query', 'header'] as const) {
      const params = op.params.filter((p) => p.in === place)
      if (params.length === 0) continue
      // No prototype: `constructor` and `__proto__` are keys like any other (as in the app's query parser).
      const data: Record<string, unknown> = Object.create(null)
      if (place === 'path') {
        for (const [name, { value, raw }] of Object.entries(draft.path)) {
          // A raw `/`, `?` or `#` moves the request to another route (or none): nothing certain.
          if (raw && (/[/?#]/.test(value) || value === '')) return null
          const sent = raw ? value : encodeLoose(value)
          const seen = decoded(sent)
          if (seen === undefined) return `path ${name}: malformed percent-encoding`
          data[name] = seen
        }
      } else if (place === 'query') {
        if (draft.rawQuery !== undefined) continue
        // A pair the server cannot decode: what it makes of it is its business, nothing certain.
        if (draft.query.some(([k, v]) => decoded(encodeLoose(k)) !== k || decoded(encodeLoose(v)) !== v)) continue
        for (const [k, v] of draft.query) {
          const had = data[k]
          data[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v]
        }
      } else {
        for (const [k, v] of Object.entries(draft.headers)) data[k.toLowerCase()] = headerValue(k, v)
      }
      const names = (p: Param) => place === 'header' ? p.name.toLowerCase() : p.name
      const schema = {
        type: 'object',
        properties: Object.fromEntries(params.map((p) => [names(p), p.schema])),
        required: params.filter((p) => p.required).map(names)
      }
      const validate = this.validator(`${op.operationId} ${place}`, schema, true)
      if (!validate({ ...data })) return `${place}: ${this.paramsAjv.errorsText(validate.errors)}`
    }
    return null
  }

  private bodyRefusal (op: SpecOperation, draft: Draft): string | null {
    if (!op.body) return null
    const { body } = draft
    const contentType = body.contentType
    const essence = contentType?.split(';')[0]?.trim().toLowerCase()
    if (essence && !op.body.contents.some((c) => c.type === essence)) return `content type ${essence} not accepted`
    if (body.kind === 'none' || !essence) return op.body.required && !essence ? 'required body missing' : null
    const bytes = bodyBytes(body)!
    if (bytes.length > this.bodyLimitOf(op)) return `body of ${bytes.length} bytes over the limit`
    const content = op.body.contents.find((c) => c.type === essence)!
    if (!isJsonType(essence) || content.schema.format === 'binary') return null
    let parsed: unknown
    try {
      parsed = JSON.parse(bytes.toString('utf8').replace(/^\ufeff/, ''))
    } catch {
      return 'malformed JSON'
    }
    const validate = this.validator(`${op.operationId} body ${essence}`, content.schema, false)
    if (!validate(parsed)) return `body: ${this.bodyAjv.errorsText(validate.errors).slice(0, 300)}`
    return null
  }
}

function makeAjv (coerceTypes: boolean | 'array') {
  const ajv = new Ajv({ strict: false, allErrors: false, coerceTypes, useDefaults: true, removeAdditional: false })
  addFormats(ajv)
  return ajv
}

// ---- Reporting --------------------------------------------------------------------------------------------

/**
 * A long string as its start and its length, quoted, every character outside printable ASCII escaped (U+2028
 * and its kind would otherwise end a line of TAP in the middle of a message).
 */
export function short (value: string, max = 160): string {
  const shown = JSON.stringify(value.length > max ? value.slice(0, max) : value)
    .replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`)
  return value.length > max ? `${shown}...(${value.length} chars)` : shown
}

export function describeRequest (req: BuiltRequest): string {
  const headers = Object.entries(req.headers).map(([k, v]) => `  ${k}: ${Array.isArray(v) ? `[${v.map((x) => short(x, 80)).join(', ')}]` : short(v, 120)}`)
  let payload = ''
  if (req.payload !== undefined) {
    const asText = req.payload.toString('utf8')
    const utf8 = Buffer.from(asText, 'utf8').equals(req.payload)
    payload = `\n  body (${req.payload.length} bytes${utf8 ? '' : ', not valid UTF-8'}): ${short(asText, 300)}`
    if (req.payload.length <= 2048) payload += `\n  body base64: ${req.payload.toString('base64')}`
  }
  return `${req.method} ${short(req.url, 300).slice(1, -1)}\n${headers.join('\n')}${payload}`
}

// ---- Drafts and mutations ---------------------------------------------------------------------------------

export interface Mutation { note: string, apply: (draft: Draft) => Draft }

const mutation = (note: string, apply: (d: Draft) => Draft): Mutation =>
  ({ note, apply: (d) => { const next = apply(d); return { ...next, notes: [...d.notes, note] } } })

export function applyMutations ([draft, mutations]: [Draft, readonly Mutation[]]): Draft {
  return mutations.reduce((d, m) => m.apply(d), draft)
}

/** Header values as a client can send them: printable Latin-1 (bytes above 0x7f arrive as Latin-1 in Node). */
export const headerText = (minLength = 0, maxLength = 40) => fc.string({
  unit: fc.oneof({ weight: 8, arbitrary: fc.integer({ min: 0x20, max: 0x7e }) }, { weight: 1, arbitrary: fc.integer({ min: 0xa0, max: 0xff }) }, { weight: 1, arbitrary: fc.constant(0x09) })
    .map((c) => String.fromCharCode(c)),
  minLength,
  maxLength
})
const headerJunk = fc.oneof(
  { weight: 4, arbitrary: headerText() },
  { weight: 3, arbitrary: fc.constantFrom('NaN', '1e999', '-91', '91', '181', '-181', '', ' 45 ', '0x10', '45,5', '*', 'W/"x"', '"x", "y"', '../', 'null', '0', '-0', '9'.repeat(400), 'Infinity', '-Infinity', '4.5e1', 'gzip, deflate, br', 'Bearer x', 'text/event-stream') },
  { weight: 1, arbitrary: fc.constant('x'.repeat(10_000)) }
)
const junkHeaderNames = ['x-request-id', 'accept', 'accept-encoding', 'accept-language', 'accept-charset', 'if-none-match', 'if-modified-since', 'if-match', 'origin', 'cookie',
  'referer', 'user-agent', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded', 'cloudfront-viewer-latitude', 'cloudfront-viewer-longitude',
  'cf-iplatitude', 'cf-iplongitude', 'cf-connecting-ip', 'cf-ipcountry', 'x-real-ip', 'range', 'x-http-method-override', 'x-api-key', 'x-container-secret',
  'x-host-secret', 'x-container-id', 'last-event-id', 'idempotency-key', 'content-encoding', 'host', 'x-hasura-role', 'access-control-request-method',
  'access-control-request-headers', 'cache-control', 'pragma', 'te', 'prefer', 'x-csrf-token', 'stripe-signature']

/** Content types the operation does not take (for sure), and ones that are only odd. */
const foreignTypes = ['text/plain', 'application/xml', 'text/xml', 'multipart/form-data; boundary=x', 'application/x-www-form-urlencoded', 'application/octet-stream',
  'application/jsonx', 'application/json-patch+json', 'text/json', 'image/png', 'application/gzip', 'text/html; charset=utf-8', 'x/y', '*/*', 'application', 'application/',
  '/json', 'a'.repeat(5000), 'application/problem+json', 'text/event-stream']
const oddTypes = ['application/json; charset=latin1', 'application/json; charset=utf-16', 'APPLICATION/JSON', 'application/json;', 'application/json ; x=y', ' application/json',
  'application/json, text/plain', '', 'application/json; charset="utf-8"', 'application/json; charset=utf-8; charset=ascii', 'text/plain; charset=utf-8', 'application/gzip']
const badUtf8 = [[0xff], [0xfe, 0xff], [0xc0, 0xaf], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0x80], [0xe2, 0x82], [0xf0, 0x9f, 0x98], [0x00], [0xef, 0xbf, 0xbf]]
const malformations: Array<[string, (t: string) => string]> = [
  ['trailing garbage', (t) => `${t}x`],
  ['trailing comma', (t) => t.replace(/}$/, ',}').replace(/]$/, ',]')],
  ['single quotes', (t) => t.replace(/"/g, "'")],
  ['comment', (t) => `/* c */${t}`],
  ['NaN', () => '{"a":NaN}'],
  ['200,000 open brackets', () => '['.repeat(200_000)],
  ['raw NUL', (t) => `\u0000${t}`],
  ['two documents', (t) => `${t}${t}`],
  ['unquoted keys', (t) => t.replace(/"(\w+)":/g, '$1:')],
  ['bad escape', (t) => t.replace(/^\{/, '{"\\x41":1,')],
  ['raw control in string', (t) => t.replace(/"/, '"\u0001')],
  ['whitespace only', () => ' \n\t ']
]
const rawPathValues = ['%', '%zz', '%ff', '%c0%af', '%2F', '..', '.', '%2e%2e', 'a%00b', '%u0041', ';', 'a;b=c', '*', '', ' ', '%20', '~', '%25', '%252F', 'a'.repeat(201),
  '%F0%9F%98%80', 'CON', '-1', '0', '%0d%0aSet-Cookie:x=1', 'x/../..', '%E2%80%AE']
const rawQueries = ['%', '%zz=1', 'a=%ff%fe', '&&&', '==', 'a=%00', 'a', '?', '#x', 'a=1&a=2&a=3', `${'x'.repeat(100_000)}=1`, '%E0%A4%A=1', '+=+', 'a=b=c',
  '__proto__=1', '__proto__[polluted]=1', 'constructor[prototype][polluted]=1', 'limit=1&limit=2', 'cursor=&limit=', 'limit=%2B1', 'all=TRUE&all=false']
const unknownKeys = fc.oneof(text(0, 12), fc.constantFrom('__proto__', 'constructor', 'prototype', 'role', 'isAdmin', 'admin', 'id', 'userId', 'user_id', 'password_hash',
  'scopes', '$where', "'; drop table account; --", '\u0000', 'a'.repeat(10_000), '', 'disabled', 'email_verified_at', 'state', 'owner'))

export interface DraftOptions {
  /** Valid bodies for this operation when its schema cannot say (a signed webhook, gzip bytes). */
  validBody?: fc.Arbitrary<Body>
  bodyLimit: number
  /** How many garbage-credential attacks the caller knows (Draft.auth.variant ranges over them). */
  authVariants: number
}

export interface OperationArbitraries {
  base: fc.Arbitrary<Draft>
  /** Mutations that make a request refusable (the oracle decides, per request). */
  refusing: Array<fc.Arbitrary<Mutation>>
  /** Those, and odd but maybe valid ones: duplicated and junk headers, unknown query keys, bad UTF-8, odd content types. */
  any: Array<fc.Arbitrary<Mutation>>
}

function allProperties (schema: Schema): { properties: Record<string, Schema>, required: string[] } {
  const branches: Schema[] = [schema, ...(schema.oneOf ?? []), ...(schema.anyOf ?? [])]
  return {
    properties: Object.assign({}, ...branches.map((b) => b.properties ?? {})),
    required: [...new Set(branches.flatMap((b) => b.required ?? []))]
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => v !== null && typeof v === 'object' && !Array.isArray(v) && !(v instanceof RawJson)

export function operationArbitraries (op: SpecOperation, arbs: Arbitraries, options: DraftOptions): OperationArbitraries {
  const id = op.operationId
  const byPlace = (place: Place) => op.params.filter((p) => p.in === place)
  const pair = (p: Param) => arbs.validParam(p, id).map((v): [string, string] => [p.name, v])

  const path = fc.record(Object.fromEntries(byPlace('path').map((p) => [p.name, arbs.validParam(p, id).map((value) => ({ value }))])))
  // Optional parameters are left out half the time (a made-up `cursor` is refused by most handlers).
  const query = fc.tuple(...byPlace('query').map((p) => p.required ? pair(p) : fc.option(pair(p), { nil: undefined, freq: 2 })))
    .map((pairs) => pairs.filter((x): x is [string, string] => x !== undefined))
  const headers = fc.tuple(...byPlace('header').map((p) => p.required ? pair(p) : fc.option(pair(p), { nil: undefined, freq: 2 })))
    .map((pairs) => Object.fromEntries(pairs.filter((x): x is [string, string] => x !== undefined).map(([k, v]) => [k.toLowerCase(), asHeader(v)])))
  const jsonTypes = op.body?.contents.filter((c) => isJsonType(c.type) && c.schema.format !== 'binary') ?? []
  const bodyOf = (c: BodyContent): fc.Arbitrary<Body> => {
    if (isJsonType(c.type) && c.schema.format !== 'binary') {
      return fc.tuple(arbs.valid(c.schema, undefined, id), fc.constantFrom(c.type, `${c.type}; charset=utf-8`)).map(([value, contentType]) => ({ kind: 'json', value, contentType }))
    }
    if (c.type === 'application/x-www-form-urlencoded') {
      return arbs.valid(c.schema, undefined, id).map((v) => ({ kind: 'bytes', bytes: Buffer.from(new URLSearchParams(Object.entries(v as Record<string, unknown>).map(([k, x]): [string, string] => [k, String(x)])).toString()), contentType: c.type }))
    }
    if (c.type.startsWith('text/')) return fc.oneof(text(1, 200), huge).map((t) => ({ kind: 'bytes', bytes: Buffer.from(t, 'utf8'), contentType: c.type }))
    return fc.uint8Array({ minLength: 1, maxLength: 256 }).map((b) => ({ kind: 'bytes', bytes: Buffer.from(b), contentType: c.type }))
  }
  let body: fc.Arbitrary<Body> = fc.constant({ kind: 'none' })
  if (op.body) {
    const some = options.validBody ?? fc.oneof(...op.body.contents.map(bodyOf))
    body = op.body.required ? some : fc.option(some, { nil: { kind: 'none' } as Body, freq: 3 })
  }
  const base = fc.record({
    path,
    query,
    headers,
    body,
    auth: fc.record({ mode: fc.constant<AuthMode>('proper'), requirement: fc.nat({ max: Math.max(0, op.security.length - 1) }), garbage: fc.constant(''), variant: fc.constant(0) }),
    notes: fc.constant<string[]>([])
  })

  const refusing: Array<fc.Arbitrary<Mutation>> = []
  const any: Array<fc.Arbitrary<Mutation>> = []

  // Credentials.
  const garbage = fc.oneof(headerText(0, 60), fc.constantFrom('', 'Bearer', 'Bearer ', 'Basic YTpi', 'bearer x', 'Bearer a.b.c', 'Bearer ..', 'Token x', `Bearer ${'a'.repeat(10_000)}`, 'frp_x_y', 'frp__', 'null'))
  const credentials = (modes: AuthMode[]) => fc.record({ mode: fc.constantFrom(...modes), garbage, variant: fc.nat({ max: Math.max(0, options.authVariants - 1) }) })
    .map(({ mode, garbage, variant }) => mutation(`credentials: ${mode}${mode === 'garbage' ? ` #${variant}` : ''}`, (d) => ({ ...d, auth: { ...d.auth, mode, garbage, variant } })))
  if (op.secured) {
    refusing.push(credentials(['none', 'garbage', 'wrongScope']))
    any.push(credentials(['none', 'garbage', 'wrongScope', 'duplicated']))
  }

  // Parameters: values that break their schema, required ones left out, raw path segments, odd query strings.
  for (const p of op.params) {
    const set = (d: Draft, value: string): Draft => {
      if (p.in === 'path') return { ...d, path: { ...d.path, [p.name]: { value } } }
      if (p.in === 'query') return { ...d, query: [...d.query.filter(([k]) => k !== p.name), [p.name, value]] }
      return { ...d, headers: { ...d.headers, [p.name.toLowerCase()]: asHeader(value) } }
    }
    refusing.push(arbs.breakingParam(p).map((v) => mutation(`${p.in} ${p.name} = ${short(v, 40)}`, (d) => set(d, v))))
    if (p.required && p.in !== 'path') {
      refusing.push(fc.constant(mutation(`${p.in} ${p.name} left out`, (d) => p.in === 'query'
        ? { ...d, query: d.query.filter(([k]) => k !== p.name) }
        : { ...d, headers: Object.fromEntries(Object.entries(d.headers).filter(([k]) => k !== p.name.toLowerCase())) })))
    }
    if (p.in === 'query') {
      any.push(fc.tuple(arbs.validParam(p, id), fc.oneof(arbs.validParam(p, id), arbs.breakingParam(p)))
        .map(([a, b]) => mutation(`query ${p.name} repeated`, (d) => ({ ...d, query: [...d.query.filter(([k]) => k !== p.name), [p.name, a], [p.name, b]] }))))
    }
    if (p.in === 'header') {
      any.push(fc.tuple(arbs.validParam(p, id), fc.oneof(arbs.validParam(p, id), headerText())).map(([a, b]) =>
        mutation(`header ${p.name} sent twice`, (d) => ({ ...d, headers: { ...d.headers, [p.name.toLowerCase()]: [asHeader(a), asHeader(b)] } }))))
    }
  }
  const pathNames = byPlace('path').map((p) => p.name)
  if (pathNames.length) {
    const raw = fc.tuple(fc.constantFrom(...pathNames), fc.constantFrom(...rawPathValues))
      .map(([name, value]) => mutation(`raw path ${name} = ${short(value, 40)}`, (d) => ({ ...d, path: { ...d.path, [name]: { value, raw: true } } })))
    refusing.push(raw)
    any.push(raw)
  }
  any.push(fc.constantFrom(...rawQueries).map((raw) => mutation(`raw query ${short(raw, 40)}`, (d) => ({ ...d, rawQuery: raw }))))
  any.push(fc.tuple(unknownKeys, text(0, 20)).map(([k, v]) => mutation(`unknown query ${short(k, 30)}`, (d) => ({ ...d, query: [...d.query, [k, v]] }))))
  any.push(fc.tuple(fc.constantFrom(...junkHeaderNames), headerJunk).map(([name, value]) =>
    mutation(`header ${name}: ${short(value, 30)}`, (d) => ({ ...d, headers: { ...d.headers, [name]: value } }))))
  any.push(fc.tuple(fc.constantFrom(...junkHeaderNames), headerJunk, headerJunk).map(([name, a, b]) =>
    mutation(`header ${name} twice`, (d) => ({ ...d, headers: { ...d.headers, [name]: [a, b] } }))))

  // Bodies.
  const bodyText = (d: Draft) => d.body.kind === 'none' ? '' : bodyBytes(d.body)!.toString('utf8')
  const bytesOf = (d: Draft) => d.body.kind === 'none' ? Buffer.alloc(0) : bodyBytes(d.body)!
  const firstType = op.body?.contents[0]?.type ?? 'application/json'
  const typeOfDraft = (d: Draft) => d.body.contentType ?? firstType
  if (op.body) {
    const setType = (types: string[]) => fc.constantFrom(...types).map((type) => mutation(`content-type ${short(type, 40)}`, (d) => ({ ...d, body: { ...d.body, contentType: type } })))
    refusing.push(setType(foreignTypes))
    any.push(setType(foreignTypes), setType(oddTypes))
    refusing.push(fc.constant(mutation('no body, no content type', (d) => ({ ...d, body: { kind: 'none' } }))))
    refusing.push(fc.constant(mutation('empty body', (d) => ({ ...d, body: { kind: 'bytes', bytes: Buffer.alloc(0), contentType: typeOfDraft(d) } }))))
    refusing.push(fc.constant(mutation('body over the limit', (d) => ({
      ...d, body: { kind: 'bytes', bytes: Buffer.concat([Buffer.from('{"a":"'), Buffer.alloc(options.bodyLimit + 16, 'a'), Buffer.from('"}')]), contentType: typeOfDraft(d) }
    }))))
    const malformed = fc.oneof(
      fc.double({ min: 0, max: 0.999, noNaN: true }).map((f): [string, (t: string) => string] => [`truncated at ${Math.round(f * 100)} %`, (t) => t.slice(0, Math.floor(t.length * f))]),
      fc.constantFrom(...malformations)
    ).map(([note, f]) => mutation(`malformed JSON: ${note}`, (d) => ({ ...d, body: { kind: 'bytes', bytes: Buffer.from(f(bodyText(d)), 'utf8'), contentType: typeOfDraft(d) } })))
    refusing.push(malformed)
    any.push(malformed)
    any.push(fc.tuple(fc.constantFrom(...badUtf8), fc.double({ min: 0, max: 1, noNaN: true })).map(([bad, where]) => mutation(`bad UTF-8 bytes ${Buffer.from(bad).toString('hex')}`, (d) => {
      const bytes = bytesOf(d)
      // Inside a string when there is one (after a quote), else anywhere.
      const quotes = [...bytes.keys()].filter((i) => bytes[i] === 0x22)
      const at = quotes.length ? quotes[Math.min(quotes.length - 1, Math.floor(where * quotes.length))]! + 1 : Math.floor(where * bytes.length)
      return { ...d, body: { kind: 'bytes', bytes: Buffer.concat([bytes.subarray(0, at), Buffer.from(bad), bytes.subarray(at)]), contentType: typeOfDraft(d) } }
    })))
    any.push(fc.constantFrom<[string, (b: Buffer) => Buffer, string | null]>(
      ['UTF-8 BOM', (b) => Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), b]), null],
    ['UTF-16LE', (b) => Buffer.from(b.toString('utf8'), 'utf16le'), 'application/json; charset=utf-16'],
    ['UTF-16LE, no charset', (b) => Buffer.from(b.toString('utf8'), 'utf16le'), null],
    ['gzip-claimed', (b) => b, null]
    ).map(([note, f, type]) => mutation(`body ${note}`, (d) => ({
      ...d,
      headers: note === 'gzip-claimed' ? { ...d.headers, 'content-encoding': 'gzip' } : d.headers,
      body: { kind: 'bytes', bytes: f(bytesOf(d)), contentType: type ?? typeOfDraft(d) }
    }))))
    // Whole bodies of another shape (signed, when the operation signs them: the caller finishes the request).
    const anyJson = fc.oneof(wrongTypes, deepJson, fc.jsonValue({ maxDepth: 3 }), huge, fc.constant(new RawJson('{"a":1,"a":2}')), fc.constant(new RawJson('{"\\ud800":"\\udfff"}')))
    refusing.push(anyJson.map((value) => mutation(`body ${short(jsonText(value), 40)}`, (d) => ({ ...d, body: { kind: 'json', value, contentType: typeOfDraft(d) } }))))
    any.push(anyJson.map((value) => mutation(`body ${short(jsonText(value), 40)}`, (d) => ({ ...d, body: { kind: 'json', value, contentType: typeOfDraft(d) } }))))
  } else {
    any.push(fc.tuple(fc.jsonValue({ maxDepth: 2 }), fc.constantFrom('application/json', 'text/plain', 'application/x-www-form-urlencoded', 'application/xml', 'application/octet-stream'))
      .map(([value, type]) => mutation(`unexpected ${type} body`, (d) => ({ ...d, body: { kind: 'bytes', bytes: Buffer.from(type === 'application/json' ? jsonText(value) : String(value)), contentType: type } }))))
  }

  // Structured JSON bodies: required properties left out, unknown ones added, values that break their schema.
  for (const content of jsonTypes) {
    const { properties, required } = allProperties(content.schema)
    const onObject = (note: string, f: (o: Record<string, unknown>) => Record<string, unknown>) => mutation(note, (d) =>
      d.body.kind === 'json' && isObject(d.body.value) ? { ...d, body: { ...d.body, value: f(d.body.value) } } : d)
    const structured: Array<fc.Arbitrary<Mutation>> = []
    if (required.length) structured.push(fc.constantFrom(...required).map((k) => onObject(`body.${k} left out`, (o) => withoutKey(o, k))))
    structured.push(fc.tuple(unknownKeys, fc.oneof(fc.jsonValue({ maxDepth: 2 }), deepJson, huge)).map(([k, v]) => onObject(`unknown body.${short(k, 30)}`, (o) => withKey(o, k, v))))
    const keys = Object.keys(properties)
    if (keys.length) {
      structured.push(fc.constantFrom(...keys).chain((k) => arbs.breaking(properties[k]!).map((v) =>
        onObject(`body.${k} = ${short(jsonText(v), 40)}`, (o) => withKey(o, k, v)))))
    }
    refusing.push(...structured)
    any.push(...structured)
  }
  return { base, refusing, any }
}

/** The request as sent: values encoded, the body's bytes, credentials left to the caller (`credentials`). */
export function buildRequest (op: SpecOperation, draft: Draft, credentials: Record<string, string | string[]>): BuiltRequest {
  const path = op.path.replace(/\{(\w+)\}/g, (_, name: string) => {
    const p = draft.path[name]
    if (!p) return ''
    return p.raw ? p.value : encodeLoose(p.value)
  })
  const query = draft.query.map(([k, v]) => `${encodeLoose(k)}=${encodeLoose(v)}`)
  if (draft.rawQuery !== undefined) query.push(draft.rawQuery)
  // The draft's own headers win: a junk X-Api-Key stays junk (the oracle never counts on credentials then).
  const headers: Record<string, string | string[]> = { ...credentials, ...draft.headers }
  const bytes = bodyBytes(draft.body)
  if (draft.body.contentType !== undefined) headers['content-type'] = draft.body.contentType
  return { method: op.method, url: query.length ? `${path}?${query.join('&')}` : path, headers, ...(bytes ? { payload: bytes } : {}) }
}
