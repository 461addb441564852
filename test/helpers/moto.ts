// moto, an AWS emulator nobody here wrote, in server mode (started by ../shared/tools/moto-server), for the
// AWS integration suite in test/cloud/: the product's real SDK clients talk to it over HTTP, with their real
// signing, (de)serialisation and errors. One server for the whole run: `.ci/run` starts it and exports
// MOTO_URL; without MOTO_URL the first file starts it (the script answers the URL of one already running).
// Files run side by side on the one server, so each keeps to AWS regions of its own (moto's state is per
// region) and unique names, and never resets it.
//
// What moto does not emulate (the script's header) stays with the SDK-boundary models: hosts joining ECS
// (a test registers container instances itself), task port bindings, PROVISIONING, clientToken
// de-duplication, managed scaling, StartInstanceRefresh, IAM and security-group effects.
import { execFile } from 'node:child_process'
import { existsSync } from 'node:fs'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const repo = resolve(dirname(fileURLToPath(import.meta.url)), '../..')

/**
 * MOTO_SERVER, else ../shared/tools/moto-server from the repository or a folder above it (a worktree one level
 * down), else the workplace's copy in /work/shared (a clone made elsewhere, as CI's fresh clone may be).
 */
export function motoScript (): string | null {
  if (process.env.MOTO_SERVER) return existsSync(process.env.MOTO_SERVER) ? process.env.MOTO_SERVER : null
  for (let dir = resolve(repo, '..'); ; dir = dirname(dir)) {
    const script = join(dir, 'shared', 'tools', 'moto-server')
    if (existsSync(script)) return script
    if (dirname(dir) === dir) break
  }
  return existsSync('/work/shared/tools/moto-server') ? '/work/shared/tools/moto-server' : null
}

export type Moto = { url: string, skip: false } | { url: null, skip: string }

let started: Promise<Moto> | undefined

/**
 * The moto server's URL, with the SDK of this test process pointed at it (AWS_ENDPOINT_URL and test
 * credentials: the SDK reads them from the environment; each tap file is a process of its own). Skips
 * only where moto cannot run here: no python3, or no moto-server script. Anything else (moto does not
 * start, MOTO_URL does not answer) is a failure.
 */
export function moto (): Promise<Moto> {
  started ??= (async (): Promise<Moto> => {
    let url = process.env.MOTO_URL
    if (!url) {
      const script = motoScript()
      if (!script) return { url: null, skip: 'moto: skipped, no shared/tools/moto-server above the repository' }
      if (!await run('sh', ['-c', 'command -v python3']).then(() => true, () => false)) return { url: null, skip: 'moto: skipped, python3 is missing' }
      const out = await run(script, ['start', ...(process.env.MOTO_PORT ? [process.env.MOTO_PORT] : [])], { timeout: 300_000 })
        .catch((err: { stderr?: string, message: string }) => { throw new Error(`moto-server did not start: ${err.stderr || err.message}`) })
      url = out.stdout.trim().split('\n').pop()!
    }
    const answer = await fetch(`${url}/moto-api/`).catch((err: Error) => err)
    if (answer instanceof Error || !answer.ok) throw new Error(`moto does not answer at ${url}: ${answer instanceof Error ? answer.message : answer.status}`)
    Object.assign(process.env, { AWS_ENDPOINT_URL: url, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test', AWS_EC2_METADATA_DISABLED: 'true' })
    delete process.env.AWS_PROFILE
    return { url, skip: false }
  })()
  return started
}

/**
 * What an operator creates in a region before clusters can run there (docs/operations.md, "On AWS"): a security
 * group in the default VPC with the hosts' inbound rules. moto records the rules; it does not enforce them.
 */
export async function hostSecurityGroup (region: string, name: string): Promise<string> {
  const { AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, DescribeVpcsCommand, EC2Client } = await import('@aws-sdk/client-ec2')
  const ec2 = new EC2Client({ region })
  const vpc = (await ec2.send(new DescribeVpcsCommand({ Filters: [{ Name: 'is-default', Values: ['true'] }] }))).Vpcs?.[0]?.VpcId
  const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: name, Description: 'Fractal hosts', VpcId: vpc }))
  await ec2.send(new AuthorizeSecurityGroupIngressCommand({
    GroupId,
    IpPermissions: [
      // The host ports ECS maps the containers' 32262/tcp, 32263/udp and 32273/tcp to, for the clients.
      { IpProtocol: 'tcp', FromPort: 32768, ToPort: 65535, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'Fractal clients (container ports)' }] },
      { IpProtocol: 'udp', FromPort: 32768, ToPort: 65535, IpRanges: [{ CidrIp: '0.0.0.0/0', Description: 'Fractal clients (container ports)' }] },
      // The host agent, for the web and worker processes (their addresses in a real deployment).
      { IpProtocol: 'tcp', FromPort: 4678, ToPort: 4678, IpRanges: [{ CidrIp: '10.0.0.0/8', Description: 'Fractal API to the host agent' }] }
    ]
  }))
  return GroupId!
}
