// Injection (OWASP API8/API10 of old, and the fuzzer's subject seen from the other side), walked from the spec:
// SQL metacharacters in every string path and query parameter of every read, sent with the credential the
// operation needs so they reach the queries, never cause a 5xx, never widen a search (a LIKE wildcard is a
// character, not a pattern), and leave every table as it was. And a static check over services/, routes/ and
// plugins/: no `sql.raw`, `sql.lit` or SQL text built by concatenation or by an untagged template, except the
// allow-listed safe uses.
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative } from 'node:path'
import { sql } from '../../db/kysely.js'
import t from 'tap'
import { build } from '../helpers/build.js'
import { given } from '../helpers/given.js'
import { partners } from '../routes/partners/partner-fixtures.js'
import { isProblem, operations, validRequest } from './spec-walk.js'

const payloads = ["' OR 1=1 --", '"; drop table account; --', "'; select pg_sleep(3); --", '\u0000', '%_', '%', '\\', "1' union select password_hash from account --", '$1', '?']

async function tableCounts (app: Awaited<ReturnType<typeof build>>) {
  const tables = await sql<{ name: string }>`select table_name as name from information_schema.tables where table_schema = 'public' and table_type = 'BASE TABLE' order by 1`.execute(app.db)
  const counts: Record<string, number> = {}
  for (const { name } of tables.rows) counts[name] = Number((await sql<{ n: string }>`select count(*) as n from ${sql.table(name)}`.execute(app.db)).rows[0]!.n)
  return counts
}

t.test('security › injection › SQL metacharacters in every string parameter of every read: no 5xx, nothing widened, nothing changed', async (t) => {
  const app = await build(t, { RATE_LIMIT_ENABLED: 'false' })
  const g = given(app)
  const admin = await g.signedIn({ role: 'admin' })
  const users = [await g.user({ name: 'Ada' }), await g.user({ name: 'Grace' })]
  const warm = await g.warmContainer(await g.offer())
  const f = partners(app)
  const partnerKey = (await f.withKey()).headers
  const credentials: Record<string, Record<string, string>> = {
    bearer: admin.headers,
    partnerKey,
    containerSecret: { 'x-container-secret': warm.secret }
  }
  const before = await tableCounts(app)

  const reads = operations.filter((op) => op.method === 'GET' && op.operationId !== 'streamJobEvents')
  const wrong: string[] = []
  let sent = 0
  for (const op of reads) {
    const scheme = Object.keys(op.security[0] ?? {})[0]
    const headers = scheme ? credentials[scheme] ?? {} : {}
    const strings = op.params.filter((p) => (p.in === 'path' || p.in === 'query') && (p.schema.type === 'string' || p.schema.type === undefined))
    for (const param of strings) {
      for (const payload of payloads) {
        const values = param.in === 'path' ? { [param.name]: payload } : {}
        const request = validRequest(op, values)
        const url = param.in === 'query' ? `${request.url}${request.url.includes('?') ? '&' : '?'}${encodeURIComponent(param.name)}=${encodeURIComponent(payload)}` : request.url
        const started = Date.now()
        const res = await app.inject({ ...request, url, headers: { ...request.headers, ...headers } })
        sent++
        if (res.statusCode >= 500) wrong.push(`${op.operationId} ${param.in} ${param.name}=${JSON.stringify(payload)}: ${res.statusCode} ${res.body.slice(0, 120)}`)
        else if (res.statusCode >= 400 && !isProblem(res)) wrong.push(`${op.operationId} ${param.name}=${JSON.stringify(payload)}: not a problem`)
        if (Date.now() - started > 2500) wrong.push(`${op.operationId} ${param.name}=${JSON.stringify(payload)}: took ${Date.now() - started} ms (pg_sleep ran?)`)
        if (res.body.includes('$argon2')) wrong.push(`${op.operationId} ${param.name}=${JSON.stringify(payload)}: a password hash in the answer`)
      }
    }
  }
  t.ok(sent > 200, `${sent} requests`)
  t.same(wrong, [], 'never a 5xx, always a problem when refused, no hash, no sleep')
  t.same(await tableCounts(app), before, 'every table is there, with the rows it had')

  // A LIKE wildcard searches for itself: it does not match every account.
  for (const q of ['%', '_', '%_', '\\%']) {
    const res = await app.inject({ method: 'GET', url: `/v1/admin/users?q=${encodeURIComponent(q)}`, headers: admin.headers })
    t.equal(res.statusCode, 200)
    t.same(res.json().items, [], `q=${q} matches no one (${users.length + 1} accounts exist)`)
  }
  const ada = await app.inject({ method: 'GET', url: '/v1/admin/users?q=ada', headers: admin.headers })
  t.same(ada.json().items.map((u: { name: string }) => u.name), ['Ada'], 'a real search still finds')
  const actions = await app.inject({ method: 'GET', url: `/v1/admin/audit?targetId=${encodeURIComponent("' OR '1'='1")}`, headers: admin.headers })
  t.same(actions.json().items, [], 'an audit filter with a quote matches nothing')
})

// ---- Static: how SQL is written --------------------------------------------------------------------------------

const root = new URL('../..', import.meta.url).pathname
const scanned = ['services', 'routes', 'plugins']

/** Safe uses, by file and the text of the use: identifiers from our own code, never from a request. */
const allowed: Array<{ file: string, use: RegExp, reason: string }> = [
  { file: 'services/partners/partners.repository.ts', use: /sql\.ref\(column\.(createdAt|id)\)/, reason: 'keyset paging: the columns are constants of the repository' }
]

function sourceFiles (dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name)
    return statSync(path).isDirectory() ? sourceFiles(path) : /\.ts$/.test(name) && !/\.d\.ts$/.test(name) ? [path] : []
  })
}

const sqlWords = /^\s*(select|insert|update|delete|with|alter|drop|create|truncate|grant|copy)\b/i
const checks: Array<{ what: string, find: RegExp }> = [
  { what: 'sql.raw / sql.lit / sql.ref / sql.id (text into the query as it is)', find: /sql\s*\.\s*(raw|lit|ref|id)\s*\(/g },
  { what: 'a query run from text (.query / executeQuery / CompiledQuery.raw)', find: /\.query\s*\(\s*[`'"]|executeQuery\s*\(|CompiledQuery\s*\.\s*raw\s*\(/g },
  { what: 'SQL text concatenated', find: /(['"])\s*(select|insert|update|delete|with)\b[^'"\n]*\1\s*\+|\+\s*(['"])\s*(where|and|or|order by|limit|from|set|values)\b/gi }
]

t.test('security › injection › no SQL is built from text in services/, routes/ or plugins/ except the allow-listed uses', async (t) => {
  const found: string[] = []
  const usedAllowances = new Set<number>()
  let files = 0
  for (const file of scanned.flatMap((dir) => sourceFiles(join(root, dir)))) {
    files++
    const rel = relative(root, file)
    const text = readFileSync(file, 'utf8')
    const line = (index: number) => text.slice(0, index).split('\n').length
    const report = (index: number, what: string, snippet: string) => {
      const allowance = allowed.findIndex((a) => a.file === rel && a.use.test(snippet))
      if (allowance >= 0) usedAllowances.add(allowance)
      else found.push(`${rel}:${line(index)} ${what}: ${snippet.trim().slice(0, 80)}`)
    }
    for (const { what, find } of checks) {
      for (const m of text.matchAll(find)) report(m.index!, what, text.slice(m.index!, m.index! + 80).split('\n')[0]!)
    }
    // Template literals that read as SQL and interpolate, but are not the `sql` tag (which binds parameters).
    for (const m of text.matchAll(/`((?:[^`\\]|\\.)*)`/g)) {
      // The `sql` tag, with or without a type argument (`sql<{ n: string }>`), right before the backtick.
      const tagged = /\bsql\s*(?:<[^`;]*>)?\s*$/.test(text.slice(Math.max(0, m.index! - 300), m.index!))
      if (!tagged && sqlWords.test(m[1]!) && m[1]!.includes('${')) report(m.index!, 'an untagged SQL template with interpolation', m[0].split('\n')[0]!)
    }
  }
  t.ok(files > 50, `${files} files read`)
  t.same(found, [], 'SQL goes through Kysely\'s builder or the sql`` tag, whose ${} are bound parameters')
  t.same(allowed.filter((_, i) => !usedAllowances.has(i)).map((a) => a.file), [], 'no stale allowance')
})
