// kysely's values through its CommonJS build, for every module of the app, its tests and its bench (types are
// imported from 'kysely' directly: they cost nothing at run time). Its ES module build is ~260 files; under
// tsx (the tests, `npm run dev`) each is a round trip through the loader hooks, ~0.4 s of CPU per process, and
// a test run starts ~165 processes. The CommonJS build loads in-thread in a third of that. One copy for all:
// a value imported from 'kysely' itself would load the second build beside this one.
import { createRequire } from 'node:module'
import type * as K from 'kysely'

const kysely = createRequire(import.meta.url)('kysely') as typeof K

/* eslint-disable @typescript-eslint/no-redeclare -- each class's value and its type under one name, as kysely exports them */
export const { sql, Kysely, PostgresDialect, Migrator, FileMigrationProvider } = kysely
export type Kysely<DB> = K.Kysely<DB>
export type PostgresDialect = K.PostgresDialect
export type Migrator = K.Migrator
export type FileMigrationProvider = K.FileMigrationProvider
