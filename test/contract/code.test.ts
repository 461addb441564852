// The code as a whole: it type-checks against the generated types, and lints clean. A file of its own:
// tsc and eslint over the repository take most of a test file's time limit on a busy machine.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

t.test('spec › the code type-checks against the generated types (Handler<> included)', async (t) => {
  const result = await run(join(root, 'node_modules/.bin/tsc'), ['--noEmit', '-p', 'tsconfig.json'], { cwd: root }).then(() => '', (err) => err.stdout as string)
  t.equal(result, '', 'tsc --noEmit is clean')
})
