// Issue 20: the README is a front page (what it is, the two commands, the folder map, links) and each topic
// has its page in docs/. A reader following a link must land on a file that exists, at a heading that exists,
// and every docs page must be reachable from the README.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { dirname, join, normalize, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'

const root = fileURLToPath(new URL('../../', import.meta.url))
const read = (file: string) => readFileSync(join(root, file), 'utf8')
const docs = readdirSync(join(root, 'docs')).filter((file) => file.endsWith('.md')).map((file) => `docs/${file}`)

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces as hyphens. */
const slug = (heading: string) => heading.trim().toLowerCase().replace(/[^\p{L}\p{N}_\- ]/gu, '').replace(/ /g, '-')
const anchors = (file: string) => new Set([...read(file).matchAll(/^#+ (.+)$/gm)].map((m) => slug(m[1]!)))
/** Relative links of a markdown file, code blocks left out. */
const links = (file: string) => [...read(file).replace(/^```[\s\S]*?^```/gm, '').matchAll(/\]\(([^)\s]+)\)/g)]
  .map((m) => m[1]!).filter((target) => !/^[a-z]+:/.test(target))

t.test('docs › the README is a front page of under 150 lines that links every docs page', async (t) => {
  const readme = read('README.md')
  t.ok(readme.split('\n').length < 150, `${readme.split('\n').length} lines`)
  const linked = new Set(links('README.md').map((target) => target.split('#')[0]))
  for (const page of docs) t.ok(linked.has(page), `the README links ${page}`)
})

t.test('docs › every docs page opens with its summary and a link back to the README', async (t) => {
  for (const page of docs) {
    const [title, blank, summary] = read(page).split('\n')
    t.match(title, /^# \S/, `${page} has a title`)
    t.equal(blank, '', `${page}: a blank line after the title`)
    t.match(summary, /\]\(\.\.\/README\.md\)/, `${page}: its summary links back to the README`)
  }
})

t.test('docs › every relative link of the README and the docs pages reaches a file, and a heading there', async (t) => {
  for (const file of ['README.md', ...docs, 'sdk/README.md']) {
    for (const target of links(file)) {
      const [path, anchor] = target.split('#') as [string, string | undefined]
      const resolved = path ? normalize(join(dirname(file), path)) : file
      if (!existsSync(join(root, resolved)) || relative(root, join(root, resolved)).startsWith('..')) {
        t.fail(`${file} links ${target}: no such file in the repository`)
        continue
      }
      if (anchor && resolved.endsWith('.md')) t.ok(anchors(resolved).has(anchor), `${file} links ${target}: the heading exists`)
    }
  }
})
