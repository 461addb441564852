import type { CompiledQuery, DatabaseConnection, Dialect, Driver, OperationNode, QueryCompiler, QueryResult, TransactionSettings } from 'kysely'

/** The ids of the rows a statement updated, or null when its filter does not name them (any row may have). */
export type UpdatedIds = readonly string[] | null
type Listener = (ids: UpdatedIds) => void

interface Node extends OperationNode { [key: string]: any }

/** `update "t"`, `update t`, `update "public"."t"`, in any statement (a raw one, a CTE). */
const updatePattern = (table: string) => new RegExp(`\\bupdate\\s+(?:"?\\w+"?\\.)?(?:"${table}"|${table}\\b)`, 'i')

function tableAndAlias (node: Node | undefined): { table: string, alias?: string } | undefined {
  if (node?.kind === 'TableNode') return { table: node.table.identifier.name }
  if (node?.kind === 'AliasNode' && node.node.kind === 'TableNode') return { table: node.node.table.identifier.name, alias: node.alias.name }
  return undefined
}

/** The values of `id = x` / `id in (…)` in a filter of ANDs; undefined when the filter does not pin the id. */
function pinnedIds (node: Node | undefined, names: ReadonlySet<string>): string[] | undefined {
  if (!node) return undefined
  if (node.kind === 'WhereNode' || node.kind === 'ParensNode') return pinnedIds(node.where ?? node.node, names)
  if (node.kind === 'AndNode') return pinnedIds(node.left, names) ?? pinnedIds(node.right, names)
  if (node.kind !== 'BinaryOperationNode') return undefined
  const ref = node.leftOperand as Node
  if (ref.kind !== 'ReferenceNode' || ref.column.kind !== 'ColumnNode' || ref.column.column.name !== 'id') return undefined
  if (ref.table && !names.has(ref.table.table.identifier.name)) return undefined
  const operator = node.operator.operator
  const right = node.rightOperand as Node
  if (operator === '=' && right.kind === 'ValueNode') return [String(right.value)]
  if (operator === 'in' && right.kind === 'PrimitiveValueListNode') return right.values.map(String)
  if (operator === 'in' && right.kind === 'ValueListNode' && right.values.every((v: Node) => v.kind === 'ValueNode')) return right.values.map((v: Node) => String(v.value))
  return undefined
}

type Pending = Map<string, Set<string> | null>

function merge (into: Pending, table: string, ids: UpdatedIds) {
  if (ids === null || into.get(table) === null) { into.set(table, null); return }
  const set = into.get(table) ?? new Set<string>()
  for (const id of ids) set.add(id)
  into.set(table, set)
}

class WatchedConnection implements DatabaseConnection {
  /** What this connection's open transaction updated; null outside a transaction. */
  pending: Pending | null = null
  constructor (readonly inner: DatabaseConnection, private readonly seen: (connection: WatchedConnection, query: CompiledQuery) => void) {}

  async executeQuery<R> (query: CompiledQuery): Promise<QueryResult<R>> {
    const result = await this.inner.executeQuery<R>(query)
    this.seen(this, query)
    return result
  }

  streamQuery<R> (query: CompiledQuery, chunkSize?: number): AsyncIterableIterator<QueryResult<R>> {
    return this.inner.streamQuery<R>(query, chunkSize)
  }
}

/**
 * Tells listeners which rows of a table were updated, once the update is committed: at once outside a
 * transaction, at COMMIT inside one, never after a ROLLBACK. So a listener that reads the rows again
 * (another process, told over pub/sub) sees the new values, and no write path can forget to announce
 * itself. Updates built with kysely name their rows when the filter pins `id` (`id = x`, `id in (…)`,
 * possibly ANDed with more); any other update of the table, a raw one included, announces `null`.
 */
export class CommittedWrites {
  readonly #listeners = new Map<string, { pattern: RegExp, listeners: Listener[] }>()

  /** Calls `listener` after each committed update of `table`. */
  on (table: string, listener: Listener): void {
    const entry = this.#listeners.get(table) ?? { pattern: updatePattern(table), listeners: [] }
    entry.listeners.push(listener)
    this.#listeners.set(table, entry)
  }

  /** The same dialect, with every connection's updates watched. */
  wrap (dialect: Dialect): Dialect {
    return {
      createAdapter: () => dialect.createAdapter(),
      createIntrospector: (db) => dialect.createIntrospector(db),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createDriver: () => this.#wrapDriver(dialect.createDriver())
    }
  }

  #updates (query: CompiledQuery): Array<[string, UpdatedIds]> {
    if (this.#listeners.size === 0) return []
    const node = query.query as Node
    const target = node.kind === 'UpdateQueryNode' && !node.from && !node.joins ? tableAndAlias(node.table) : undefined
    const found: Array<[string, UpdatedIds]> = []
    for (const [table, { pattern }] of this.#listeners) {
      if (target?.table === table) {
        found.push([table, pinnedIds(node.where, new Set([table, ...(target.alias ? [target.alias] : [])])) ?? null])
      } else if (pattern.test(query.sql)) {
        found.push([table, null])
      }
    }
    return found
  }

  #emit (table: string, ids: UpdatedIds) {
    for (const listener of this.#listeners.get(table)?.listeners ?? []) {
      // A listener's failure is its own; the write it was told of is committed either way.
      try { listener(ids) } catch {}
    }
  }

  #seen = (connection: WatchedConnection, query: CompiledQuery) => {
    for (const [table, ids] of this.#updates(query)) {
      if (connection.pending) merge(connection.pending, table, ids)
      else this.#emit(table, ids)
    }
  }

  #wrapDriver (driver: Driver): Driver {
    const inner = (c: DatabaseConnection) => (c as WatchedConnection).inner
    const watched: Driver = {
      init: () => driver.init(),
      destroy: () => driver.destroy(),
      acquireConnection: async () => new WatchedConnection(await driver.acquireConnection(), this.#seen),
      releaseConnection: (c) => driver.releaseConnection(inner(c)),
      beginTransaction: async (c: DatabaseConnection, settings: TransactionSettings) => {
        await driver.beginTransaction(inner(c), settings)
        ;(c as WatchedConnection).pending = new Map()
      },
      commitTransaction: async (c: DatabaseConnection) => {
        const pending = (c as WatchedConnection).pending
        ;(c as WatchedConnection).pending = null
        await driver.commitTransaction(inner(c))
        for (const [table, ids] of pending ?? []) this.#emit(table, ids === null ? null : [...ids])
      },
      rollbackTransaction: async (c: DatabaseConnection) => {
        (c as WatchedConnection).pending = null
        await driver.rollbackTransaction(inner(c))
      }
    }
    // A rollback to a savepoint keeps what it undid in `pending`: announcing a row that did not change
    // only makes a listener read it again.
    if (driver.savepoint) watched.savepoint = (c, name, compile: QueryCompiler['compileQuery']) => driver.savepoint!(inner(c), name, compile)
    if (driver.rollbackToSavepoint) watched.rollbackToSavepoint = (c, name, compile) => driver.rollbackToSavepoint!(inner(c), name, compile)
    if (driver.releaseSavepoint) watched.releaseSavepoint = (c, name, compile) => driver.releaseSavepoint!(inner(c), name, compile)
    return watched
  }
}
