// A host's user data (issue 19), run by the real bash: its paths moved under a temporary root and a fake
// `systemctl` first on PATH (it records its arguments; `cat` answers whether the unit exists, as systemctl
// does). The agent's environment must reach its unit through an EnvironmentFile, the identity document is
// preferred to a secret, and an AMI without the agent (or an agent that fails to start) must not end the
// script early under `set -e`: the host still joins ECS.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm, stat, writeFile, chmod, mkdir } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import t, { type Test } from 'tap'
import { hostAgentFiles, hostUserData, type HostAgentSettings } from '../../../services/fleet/fleet.provider.js'

const run = promisify(execFile)
const cluster = { name: 'fractal-us-east-1-0a1b2c', region: 'us-east-1' }
const identity: HostAgentSettings = { apiUrl: 'https://api.fractal.test', handshake: 'identity-document', bootstrapSecret: 'a-bootstrap-secret-0123456789' }

/** Runs the script under a temporary root; `unit`: whether the AMI has the agent's unit, and whether it starts. */
async function runUserData (t: Test, script: string, unit: 'present' | 'missing' | 'fails') {
  const root = await mkdtemp(join(tmpdir(), 'user-data-'))
  t.teardown(() => rm(root, { recursive: true, force: true }))
  const bin = join(root, 'bin')
  await mkdir(join(root, 'etc', 'ecs'), { recursive: true })
  await mkdir(bin)
  await writeFile(join(bin, 'systemctl'), [
    '#!/bin/bash',
    `echo "$*" >> ${root}/systemctl.log`,
    `if [ "$1" = cat ]; then [ "${unit}" != missing ] || { echo "No files found for $2." >&2; exit 1; }; exit 0; fi`,
    `if [ "$1" = enable ] && [ "${unit}" = fails ]; then echo "Job for $4 failed." >&2; exit 1; fi`,
    'exit 0'
  ].join('\n'))
  await chmod(join(bin, 'systemctl'), 0o755)
  // Every absolute path of the script goes under the root (the test never writes the machine's /etc).
  const moved = script.replaceAll('/etc/', `${root}/etc/`)
  t.notOk(/(^|[\s'"=])\/etc\//m.test(moved), 'no path is left outside the temporary root')
  const file = join(root, 'user-data.sh')
  await writeFile(file, moved)
  const result = await run('bash', [file], { env: { PATH: `${bin}:${process.env.PATH}` } })
    .then((r) => ({ code: 0, ...r }), (err: { code: number, stdout: string, stderr: string }) => ({ code: err.code, stdout: err.stdout, stderr: err.stderr }))
  const read = (path: string) => readFile(join(root, path), 'utf8').catch(() => null)
  return {
    ...result,
    root,
    systemctl: ((await read('systemctl.log')) ?? '').trim().split('\n').filter(Boolean),
    ecsConfig: await read('etc/ecs/ecs.config'),
    environment: await read(hostAgentFiles.environmentFile),
    environmentMode: await stat(join(root, hostAgentFiles.environmentFile)).then((s) => s.mode & 0o777, () => null),
    dropIn: await read(hostAgentFiles.dropIn)
  }
}

/** An EnvironmentFile as systemd reads ours: one NAME=value a line. */
const parse = (text: string | null) => Object.fromEntries((text ?? '').split('\n').filter(Boolean).map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]))

t.test('hostUserData › valid › joins ECS, writes the agent\'s environment (0600) to the EnvironmentFile its unit reads, starts it without blocking', async (t) => {
  const out = await runUserData(t, hostUserData(cluster, identity), 'present')

  t.equal(out.code, 0, out.stderr)
  t.match(out.ecsConfig, `ECS_CLUSTER=${cluster.name}\n`)
  t.same(parse(out.environment), {
    FRACTAL_API_URL: 'https://api.fractal.test', FRACTAL_CLUSTER: cluster.name, FRACTAL_REGION: 'us-east-1', FRACTAL_HANDSHAKE: 'identity-document'
  }, 'no secret travels when hosts present their identity document')
  t.equal(out.environmentMode, 0o600)
  t.equal(out.dropIn, `[Service]\nEnvironmentFile=${out.root}${hostAgentFiles.environmentFile}\n`, 'the drop-in hands the file to the unit')
  t.same(out.systemctl, [`cat ${hostAgentFiles.unit}`, 'daemon-reload', `enable --now --no-block ${hostAgentFiles.unit}`])
})

t.test('hostUserData › valid › with HOST_HANDSHAKE=bootstrap-secret the secret is in the environment file, and only there', async (t) => {
  const script = hostUserData(cluster, { ...identity, handshake: 'bootstrap-secret' })
  const out = await runUserData(t, script, 'present')

  t.equal(out.code, 0, out.stderr)
  t.match(parse(out.environment), { FRACTAL_HANDSHAKE: 'bootstrap-secret', FRACTAL_BOOTSTRAP_SECRET: identity.bootstrapSecret })
  t.equal(out.environmentMode, 0o600)
  t.notOk(out.systemctl.some((line) => line.includes(identity.bootstrapSecret!)), 'never on a command line')
})

t.test('hostUserData › faults › an AMI without the agent\'s unit: the script ends well, the host joins ECS, the log says why no agent runs', async (t) => {
  const out = await runUserData(t, hostUserData(cluster, identity), 'missing')

  t.equal(out.code, 0, 'set -e does not end it early')
  t.match(out.ecsConfig, `ECS_CLUSTER=${cluster.name}`)
  t.match(out.stderr, /this AMI has no fractal-host-agent\.service/)
  t.same(out.systemctl, [`cat ${hostAgentFiles.unit}`], 'nothing is started')
  t.ok(out.environment, 'the environment is written anyway (an agent installed later reads it)')
})

t.test('hostUserData › faults › an agent that fails to start: the script ends well and says so', async (t) => {
  const out = await runUserData(t, hostUserData(cluster, identity), 'fails')

  t.equal(out.code, 0)
  t.match(out.stderr, /fractal-host-agent\.service did not start/)
})

t.test('hostUserData › invalid input › a value that could escape its line (space, quote, $, newline) is refused, not written', async (t) => {
  for (const apiUrl of ['https://api.fractal.test/$(reboot)', 'https://api.fractal.test/ x', 'https://a.test\nFRACTAL_ENV\nreboot', "https://a.test/'"]) {
    t.throws(() => hostUserData(cluster, { ...identity, apiUrl }), /FRACTAL_API_URL has characters/, JSON.stringify(apiUrl))
  }
  t.throws(() => hostUserData({ ...cluster, name: 'x y' }, identity), /FRACTAL_CLUSTER/)
})

t.test('hostUserData › valid › bash reads the script (bash -n)', async (t) => {
  for (const handshake of ['identity-document', 'bootstrap-secret'] as const) {
    const dir = await mkdtemp(join(tmpdir(), 'user-data-'))
    t.teardown(() => rm(dir, { recursive: true, force: true }))
    await writeFile(join(dir, 's.sh'), hostUserData(cluster, { ...identity, handshake }))
    await t.resolves(run('bash', ['-n', join(dir, 's.sh')]), handshake)
  }
})
