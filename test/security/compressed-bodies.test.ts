// OWASP API4 (resource consumption), compression bombs, walked from the spec: every operation that accepts a
// compressed (or otherwise encoded) request body refuses one that inflates past its cap with a 413
// payload_too_large problem, and writes nothing (no row in any table, no file), while a small body of the
// same type, from the same caller, is accepted (so the 413 is about the inflating, not the request).
import { mkdtemp, readdir, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { brotliCompressSync, deflateSync, gzipSync } from 'node:zlib'
import { sql } from '../../db/kysely.js'
import t from 'tap'
import type { Role } from '../../db/types.js'
import { scopesFor } from '../../services/accounts/roles.js'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { isProblem, operations, urlOf, validRequest, type Node, type WalkedOperation } from './spec-walk.js'

/** How to make a bomb of each compressed media type: a type found in the spec without one fails the walk. */
const compressors: Record<string, (data: Buffer) => Buffer> = {
  'application/gzip': (data) => gzipSync(data, { level: 9 }),
  'application/x-gzip': (data) => gzipSync(data, { level: 9 }),
  'application/zlib': (data) => deflateSync(data, { level: 9 }),
  'application/x-brotli': (data) => brotliCompressSync(data)
}
/** Media types that are compressed or archived, whether or not we can make a bomb of them. */
const compressedType = /\b(gzip|zlib|deflate|brotli|zstd|bzip2?|xz|lzma|compress|zip|7z-compressed|rar|tar)\b/i

/** The body types of an operation that are compressed or encoded (a `contentEncoding` in the schema). */
const encodedTypes = (op: WalkedOperation): string[] =>
  Object.entries<Node>(op.raw.requestBody?.content ?? {})
    .filter(([type, media]) => compressedType.test(type) || media.schema?.contentEncoding !== undefined)
    .map(([type]) => type)

// The caps of this app: every setting that bounds what a body may inflate to, set low.
const cap = 64 * 1024
const caps = { LOG_MAX_INFLATED_BYTES: String(cap) }
/** 8 MiB of zeros: a few KiB compressed, far past the caps above, well inside any body limit. */
const bombContent = Buffer.alloc(8 * 1024 * 1024)

t.test('security › resource consumption › every operation taking a compressed body refuses a bomb with 413 and writes nothing', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'fractal-bombs-'))
  t.teardown(() => rm(dataDir, { recursive: true, force: true }))
  const app = await build(t, { ...caps, DATA_DIR: dataDir, RATE_LIMIT_ENABLED: 'false' })
  const found = operations.filter((op) => encodedTypes(op).length > 0)
  t.ok(found.length > 0, `the walk finds the operations taking compressed bodies: ${found.map((op) => op.operationId).join(', ')}`)
  t.ok(found.some((op) => op.operationId === 'uploadLog'), 'uploadLog among them')

  /** Credentials for a requirement of the spec, when the test knows how to make them. */
  async function credentials (requirement: Record<string, string[]>): Promise<Record<string, string> | null> {
    const headers: Record<string, string> = {}
    for (const [scheme, scopes] of Object.entries(requirement)) {
      if (scheme === 'bearer') {
        const role = (['user', 'developer', 'admin'] as Role[]).find((r) => scopes.every((s) => scopesFor(r).includes(s)))
        if (!role) return null
        Object.assign(headers, (await given(app).signedIn({ role })).headers)
      } else if (scheme === 'containerSecret') {
        const container = await given(app).warmContainer(await given(app).offer())
        Object.assign(headers, { 'x-container-id': container.id, 'x-container-secret': container.secret })
      } else {
        return null
      }
    }
    return headers
  }
  /** The operation's request with each value its required enum query parameters allow. */
  const variants = (op: WalkedOperation) => {
    const enums = op.params.filter((p) => p.in === 'query' && p.required && p.schema.enum)
    return enums.length === 0 ? [{}] : enums.flatMap((p) => (p.schema.enum as unknown[]).map((v) => ({ [p.name]: String(v) })))
  }
  const rowCounts = async () => {
    const tables = await sql<{ table_name: string }>`select table_name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(app.db)
    const counts: Record<string, number> = {}
    for (const { table_name: table } of tables.rows) {
      counts[table] = Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(table)}`.execute(app.db)).rows[0]!.n)
    }
    return counts
  }
  const files = async () => (await readdir(dataDir, { recursive: true })).sort()

  for (const op of found) {
    t.ok(op.statuses.has('413'), `${op.operationId} declares 413`)
    for (const type of encodedTypes(op)) {
      const compress = compressors[type]
      if (!compress) {
        t.fail(`${op.operationId} takes ${type}: add a way to make a bomb of it to this test, and a cap to the operation`)
        continue
      }
      const bomb = compress(bombContent)
      let tried = false
      for (const requirement of op.security.length > 0 ? op.security : [{}]) {
        const headers = await credentials(requirement)
        if (!headers) continue
        // A request the operation accepts with a small body of this type (its query values found by trying).
        const send = (query: Record<string, string>, payload: Buffer) => {
          const request = validRequest(op)
          return app.inject({ ...request, url: urlOf(op, {}, query), payload, headers: { ...request.headers, ...headers, 'content-type': type } })
        }
        let query: Record<string, string> | undefined
        for (const candidate of variants(op)) {
          const control = await send(candidate, compress(Buffer.from('a small, honest body\n'.repeat(20))))
          if (control.statusCode >= 200 && control.statusCode < 300) { query = candidate; break }
        }
        if (!query) continue
        tried = true
        const where = `${op.operationId} (${type}, ${Object.keys(requirement).join('+') || 'anonymous'})`
        const [rows, stored] = [await rowCounts(), await files()]

        const res = await send(query, bomb)

        t.equal(res.statusCode, 413, `${where}: a ${bomb.length}-byte body inflating to ${bombContent.length} bytes is 413`)
        t.ok(isProblem(res), `${where}: problem+json`)
        t.match(res.json(), { code: 'payload_too_large', detail: /inflated/ }, `${where}: payload_too_large, about inflating`)
        t.same(await rowCounts(), rows, `${where}: no row written`)
        t.same(await files(), stored, `${where}: no file written`)
      }
      t.ok(tried, `${op.operationId} (${type}): the test could call it with a small body (credentials and query it knows)`)
    }
  }
})
