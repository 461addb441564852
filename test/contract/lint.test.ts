// ESLint over the repository (neostandard and the import rules between folders), in a file of its own.
import { execFile } from 'node:child_process'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t from 'tap'

const run = promisify(execFile)
const root = new URL('../..', import.meta.url).pathname

t.test('code › eslint (neostandard and the import rules between folders) is clean', async (t) => {
  const result = await run(join(root, 'node_modules/.bin/eslint'), ['.'], { cwd: root }).then(() => '', (err) => `${err.stdout}${err.stderr}`)
  t.equal(result, '', 'eslint . reports nothing')
})
