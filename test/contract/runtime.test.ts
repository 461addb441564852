// Issue 19: the image ran Node 20, whose end of life was April 2026, while production dependencies (cookie@2
// and content-disposition@3, through @fastify/cookie and @fastify/static) already required Node 22. The image's
// Node line, `engines` and the README must agree, and every production dependency must run on the image's
// line from the first release `engines` admits.
import { readFile } from 'node:fs/promises'
import semver from 'semver'
import t from 'tap'

const root = new URL('../../', import.meta.url)
const read = (file: string) => readFile(new URL(file, root), 'utf8')

interface LockPackage { version?: string, dev?: boolean, engines?: { node?: string } | string[] }

async function imageLine () {
  const dockerfile = await read('Dockerfile')
  const major = Number(/^ARG NODE_IMAGE=node:(\d+)-[a-z]+-slim$/m.exec(dockerfile)?.[1])
  const engines = (JSON.parse(await read('package.json')) as { engines: { node: string } }).engines.node
  // The first release of the image's line that `engines` admits: each alternative of the range, kept to the line.
  const floor = new semver.Range(engines).set
    .map((comparators) => semver.minVersion(`${comparators.map(String).join(' ')} >=${major}.0.0 <${major + 1}.0.0`.trim()))
    .filter((v): v is semver.SemVer => v !== null)
    .sort(semver.compare)[0]
  return { major, engines, floor }
}

t.test('runtime › the image runs an LTS line of Node 22 or newer, and engines admits it', async (t) => {
  const { major, engines, floor } = await imageLine()
  t.ok(major >= 22, `node:${major}: 22 or newer (20 reached its end of life in April 2026)`)
  t.equal(major % 2, 0, 'an even line: the ones that become LTS')
  t.ok(floor, `engines (${engines}) admits Node ${major}`)
})

t.test('runtime › every production dependency runs on the image\'s line from the first release engines admits', async (t) => {
  const { floor } = await imageLine()
  const lock = JSON.parse(await read('package-lock.json')) as { packages: Record<string, LockPackage> }
  const refused: string[] = []
  for (const [path, pkg] of Object.entries(lock.packages)) {
    // The image installs with --omit=dev: what it runs is every package not marked dev.
    if (path === '' || pkg.dev) continue
    const range = Array.isArray(pkg.engines) ? undefined : pkg.engines?.node
    if (range && floor && !semver.satisfies(floor, range)) refused.push(`${path.replace(/^.*node_modules\//, '')}@${pkg.version} needs node ${range}`)
  }
  t.same(refused, [], `all run on ${floor?.version}`)
})

t.test('runtime › engines admits the Node running the tests (development on Node 20.19+ still works)', async (t) => {
  const { engines } = await imageLine()
  t.ok(semver.satisfies(process.version, engines), `${process.version} satisfies ${engines}`)
})

t.test('runtime › the README names the supported Node line and what engines says', async (t) => {
  const { major, engines } = await imageLine()
  const readme = await read('README.md')
  t.match(readme, new RegExp(`Node\\.js ${major} LTS`), `names Node.js ${major} LTS`)
  t.ok(readme.includes(engines), 'quotes engines')
})

// `npm run build` copied db/baseline, gone since the embedded baseline is built at install: the image's build
// (and the bench's) failed on it while every test passed. What the build script and the Dockerfile copy from
// the source tree must exist in it.
t.test('runtime › every path the build script and the Dockerfile copy from the tree exists', async (t) => {
  const build = (JSON.parse(await read('package.json')) as { scripts: { build: string } }).scripts.build
  const copied = build.split('&&').map((step) => step.trim()).filter((step) => step.startsWith('cp '))
    .flatMap((step) => step.split(/\s+/).slice(1).filter((word) => !word.startsWith('-')).slice(0, -1))
  t.ok(copied.length >= 4, `the build copies ${copied.join(', ')}`)
  const dockerfile = await read('Dockerfile')
  const fromTree = [...dockerfile.matchAll(/^COPY (?!--from)(.+)$/gm)].flatMap((m) => m[1]!.split(/\s+/).filter((w) => !w.startsWith('--')).slice(0, -1))
  for (const path of [...copied, ...fromTree]) {
    if (path === '.') continue
    t.ok(await readFile(new URL(path, root)).then(() => true, (err: NodeJS.ErrnoException) => err.code === 'EISDIR'), `${path} exists`)
  }
})
