// Breaking changes between two OpenAPI 3.1 documents, as a client generated from the old one meets them.
// (The npm tools for this, openapi-diff among them, stop at OpenAPI 3.0.) `npm run spec:breaking` compares
// openapi/openapi.yaml with the last released document, openapi/released/v1.yaml, and fails on any unless
// info.version's major was bumped; test/contract/breaking.test.ts runs the same check in CI.
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { parse } from 'yaml'
import { dereference } from './spec.js'

type Doc = Record<string, any>
type Schema = Record<string, any>
const methods = ['get', 'put', 'post', 'patch', 'delete', 'head', 'options'] as const

// Both documents are compared dereferenced (every $ref inlined by the one resolver, ./spec.ts); the same
// document compared again (the released one, the current one) is dereferenced once.
const dereferenced = new Map<string, Promise<Doc>>()
function dereferencedOnce (doc: Doc): Promise<Doc> {
  const key = JSON.stringify(doc)
  let found = dereferenced.get(key)
  if (!found) {
    found = dereference(doc)
    dereferenced.set(key, found)
    if (dereferenced.size > 16) dereferenced.delete(dereferenced.keys().next().value!)
  }
  return found
}

const typesOf = (s: Schema | undefined): string[] => s?.type === undefined ? [] : [s.type].flat()

/**
 * Every breaking change, one line each: operations or success answers removed, new required inputs,
 * inputs refused that were accepted (properties, enum values, types), answers missing what they promised
 * (properties, required-ness, types), security added.
 */
export async function breakingChanges (released: Doc, current: Doc): Promise<string[]> {
  const [before, after] = await Promise.all([dereferencedOnce(released), dereferencedOnce(current)])
  const found: string[] = []

  // What a client may send (request schemas): the new schema must accept everything the old one did.
  function requestSchema (where: string, oldS: Schema | undefined, newS: Schema | undefined, depth = 0): void {
    if (!oldS || !newS || depth > 8) return
    const oldTypes = typesOf(oldS)
    const newTypes = typesOf(newS)
    if (newTypes.length > 0 && oldTypes.some((t) => !newTypes.includes(t) && !(t === 'integer' && newTypes.includes('number')))) {
      found.push(`${where}: type ${oldTypes.join('|')} → ${newTypes.join('|')}`)
    }
    if (Array.isArray(oldS.enum) && Array.isArray(newS.enum)) {
      for (const value of oldS.enum) if (!newS.enum.includes(value)) found.push(`${where}: value ${JSON.stringify(value)} no longer accepted`)
    }
    for (const key of ['maxLength', 'maximum', 'maxItems'] as const) {
      if (newS[key] !== undefined && (oldS[key] === undefined || newS[key] < oldS[key])) found.push(`${where}: ${key} lowered to ${newS[key]}`)
    }
    for (const key of ['minLength', 'minimum', 'minItems'] as const) {
      if (newS[key] !== undefined && (oldS[key] === undefined || newS[key] > oldS[key])) found.push(`${where}: ${key} raised to ${newS[key]}`)
    }
    const oldRequired = new Set<string>(oldS.required ?? [])
    for (const name of newS.required ?? []) if (!oldRequired.has(name)) found.push(`${where}: property ${name} is now required`)
    const newProps = newS.properties ?? {}
    for (const [name, prop] of Object.entries<Schema>(oldS.properties ?? {})) {
      if (!(name in newProps)) {
        if (newS.additionalProperties === false) found.push(`${where}: property ${name} removed (now refused)`)
      } else {
        requestSchema(`${where}.${name}`, prop, newProps[name], depth + 1)
      }
    }
    if (oldS.items && newS.items) requestSchema(`${where}[]`, oldS.items, newS.items, depth + 1)
  }

  // What a client reads (response schemas): everything the old one promised must still be there.
  function responseSchema (where: string, oldS: Schema | undefined, newS: Schema | undefined, depth = 0): void {
    if (!oldS || !newS || depth > 8) return
    const oldTypes = typesOf(oldS)
    const newTypes = typesOf(newS)
    if (oldTypes.length > 0 && newTypes.some((t) => !oldTypes.includes(t) && !(t === 'integer' && oldTypes.includes('number')))) {
      found.push(`${where}: type ${oldTypes.join('|')} → ${newTypes.join('|')}`)
    }
    const newRequired = new Set<string>(newS.required ?? [])
    for (const name of oldS.required ?? []) if (!newRequired.has(name)) found.push(`${where}: property ${name} is no longer always there`)
    const newProps = newS.properties ?? {}
    for (const [name, prop] of Object.entries<Schema>(oldS.properties ?? {})) {
      if (!(name in newProps)) found.push(`${where}: property ${name} removed`)
      else responseSchema(`${where}.${name}`, prop, newProps[name], depth + 1)
    }
    if (oldS.items && newS.items) responseSchema(`${where}[]`, oldS.items, newS.items, depth + 1)
  }

  const schemes = (op: Doc, doc: Doc) => (op.security ?? doc.security ?? []) as Array<Record<string, string[]>>
  for (const [path, oldItem] of Object.entries<Doc>(before.paths ?? {})) {
    for (const method of methods) {
      const oldOp = oldItem[method]
      if (!oldOp) continue
      const name = `${method.toUpperCase()} ${path} (${oldOp.operationId})`
      const newOp = after.paths?.[path]?.[method]
      if (!newOp) { found.push(`${name}: removed`); continue }
      if (newOp.operationId !== oldOp.operationId) found.push(`${name}: operationId is now ${newOp.operationId} (the SDK's method name)`)

      // Security: a public operation that now needs auth, or more scopes.
      const oldSec = schemes(oldOp, before)
      const newSec = schemes(newOp, after)
      const wasPublic = oldSec.length === 0 || oldSec.some((r) => Object.keys(r).length === 0)
      const isPublic = newSec.length === 0 || newSec.some((r) => Object.keys(r).length === 0)
      if (wasPublic && !isPublic) found.push(`${name}: now needs authentication`)
      for (const requirement of newSec) {
        for (const [scheme, scopes] of Object.entries(requirement)) {
          const before = oldSec.find((r) => scheme in r)?.[scheme]
          if (before) for (const scope of scopes) if (!before.includes(scope)) found.push(`${name}: now needs scope ${scope}`)
        }
      }

      // Parameters (path item's and operation's).
      const params = (item: Doc, op: Doc) => new Map<string, Doc>([...(item.parameters ?? []), ...(op.parameters ?? [])]
        .map((p: Doc) => [`${p.in}:${String(p.name).toLowerCase()}`, p]))
      const oldParams = params(oldItem, oldOp)
      const newParams = params(after.paths[path], newOp)
      for (const [key, p] of newParams) {
        const was = oldParams.get(key)
        if (p.required && !was?.required) found.push(`${name}: parameter ${key} is ${was ? 'now' : 'new and'} required`)
        if (was) requestSchema(`${name} parameter ${key}`, was.schema, p.schema)
      }
      for (const [key] of oldParams) if (!newParams.has(key) && key.startsWith('path:')) found.push(`${name}: parameter ${key} removed`)

      // Request body.
      const oldBody = oldOp.requestBody
      const newBody = newOp.requestBody
      if (newBody?.required && !oldBody?.required) found.push(`${name}: a request body is now required`)
      for (const [type, content] of Object.entries<Doc>(oldBody?.content ?? {})) {
        const next = newBody?.content?.[type]
        if (!next) found.push(`${name}: request content type ${type} no longer accepted`)
        else requestSchema(`${name} body`, content.schema, next.schema)
      }

      // Success answers.
      for (const [status, response] of Object.entries<Doc>(oldOp.responses ?? {})) {
        if (!status.startsWith('2')) continue
        const next = newOp.responses?.[status]
        if (!next) { found.push(`${name}: answer ${status} removed`); continue }
        for (const [type, content] of Object.entries<Doc>(response.content ?? {})) {
          const nextContent = next.content?.[type]
          if (!nextContent) found.push(`${name}: answer ${status} no longer ${type}`)
          else responseSchema(`${name} ${status}`, content.schema, nextContent.schema)
        }
      }
    }
  }
  return found
}

const major = (doc: Doc) => Number(String(doc.info?.version ?? '0').split('.')[0])

/**
 * Breaking changes made on purpose within the major version, each line exactly as breakingChanges() words it,
 * with its reason; each is in CHANGELOG.md's Unreleased section too. Only for closing a security hole that
 * cannot wait for a new major; emptied when the document is released.
 */
export const acceptedBreaks: Readonly<Record<string, string>> = {
  'GET /metrics (getMetrics): now needs authentication': 'issue 18: the metrics named every route to anyone; the scraper sends METRICS_TOKEN'
}

/** The check CI runs: breaking changes are fine only with a new major version, or when accepted above. */
export async function checkAgainstRelease (released: Doc, current: Doc, accepted: Readonly<Record<string, string>> = acceptedBreaks): Promise<{ changes: string[], allowed: boolean }> {
  const changes = (await breakingChanges(released, current)).filter((change) => !(change in accepted))
  return { changes, allowed: changes.length === 0 || major(current) > major(released) }
}

export const releasedPath = fileURLToPath(new URL('./released/v1.yaml', import.meta.url))
export const currentPath = fileURLToPath(new URL('./openapi.yaml', import.meta.url))

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { changes, allowed } = await checkAgainstRelease(parse(readFileSync(releasedPath, 'utf8')), parse(readFileSync(currentPath, 'utf8')))
  for (const [change, reason] of Object.entries(acceptedBreaks)) console.log(`accepted: ${change} (${reason})`)
  for (const change of changes) console.log(`breaking: ${change}`)
  console.log(changes.length === 0 ? 'no breaking change against openapi/released/v1.yaml' : allowed ? `${changes.length} breaking changes, allowed: the major version was bumped` : `${changes.length} breaking changes: bump info.version's major (and release), or undo them`)
  process.exitCode = allowed ? 0 : 1
}
