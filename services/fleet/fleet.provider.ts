// What the cluster jobs ask of the cloud. `aws`: EC2 launch templates, Auto Scaling groups, ECS capacity
// providers and clusters through the v3 SDK clients (fleet.aws-provider.ts, loaded only then). `simulated`:
// the same in memory, so clusters can be created and deleted with no AWS.

export interface ClusterSpec {
  name: string
  region: string
  instanceType: string
  ami: string
  minSize: number
  maxSize: number
  /** The host's user data: join the ECS cluster, start the host agent. */
  userData: string
}

export interface ClusterUsageSnapshot { tasks: number, instances: number, cpuLeft: number, memoryLeftMb: number, desired: number }

export interface FleetProvider {
  readonly kind: 'simulated' | 'aws'
  /** Each create is idempotent: an existing resource of that name is found and returned. */
  createLaunchTemplate (spec: ClusterSpec): Promise<{ launchTemplateId: string, launchTemplateVersion: string }>
  /** The group launches `launchTemplateVersion` exactly (never `$Latest`: a new version is live only once its roll succeeds). */
  createAutoScalingGroup (spec: ClusterSpec, launchTemplateId: string, launchTemplateVersion: string): Promise<{ autoScalingGroupArn: string }>
  createCapacityProvider (spec: ClusterSpec, autoScalingGroupArn: string): Promise<{ capacityProvider: string }>
  createCluster (spec: ClusterSpec, capacityProvider: string): Promise<void>
  resizeGroup (region: string, name: string, size: { min: number, max: number, desired?: number }): Promise<void>
  /**
   * The group goes to zero hosts for a teardown. Its hosts are protected from scale in (ECS managed
   * termination protection), which a desired capacity of 0 does not override: their protection is lifted
   * first, and new ones launch unprotected.
   */
  drainGroup (region: string, name: string): Promise<void>
  /** Instances still in the group (a teardown waits for zero); one still protected from scale in loses its protection. */
  groupInstances (region: string, name: string): Promise<number>
  /** Each delete is idempotent: a resource already gone is fine. */
  deleteCluster (region: string, name: string): Promise<void>
  deleteCapacityProvider (region: string, capacityProvider: string): Promise<void>
  deleteAutoScalingGroup (region: string, name: string): Promise<void>
  deleteLaunchTemplate (region: string, launchTemplateId: string): Promise<void>
  usage (region: string, name: string): Promise<ClusterUsageSnapshot>
  /**
   * A new launch template version on `ami` (the default version with another image), made once per
   * `token`: the caller records the answer and never asks twice; the token covers a lost answer. A group
   * still following `$Latest` or `$Default` (made before groups were pinned) is first pinned to the version
   * it runs, so the new one is not live before its refresh succeeds.
   */
  createAmiVersion (region: string, name: string, launchTemplateId: string, ami: string, token: string): Promise<{ version: string }>
  /**
   * An instance refresh of the group onto `version` (keeping `minHealthyPercent` of the hosts in service,
   * replacing scale-in protected and standby hosts, rolled back if it fails). Idempotent: a refresh
   * already running is returned.
   */
  startAmiRefresh (region: string, name: string, launchTemplateId: string, version: string, minHealthyPercent: number): Promise<{ refreshId: string }>
  amiRefreshStatus (region: string, name: string, refreshId: string): Promise<{ state: 'in_progress' | 'successful' | 'failed', percent: number, reason?: string }>
  /** After a successful refresh: `version` becomes the template's default and the group's (AWS moves the group itself; this makes sure). */
  adoptVersion (region: string, name: string, launchTemplateId: string, version: string): Promise<void>
}

/** What a host's agent is told through its user data. */
export interface HostAgentSettings {
  /** Where the agent calls us (PUBLIC_URL). */
  apiUrl: string
  /** `identity-document`: the agent presents the instance's signed identity document, and no secret travels. */
  handshake: 'identity-document' | 'bootstrap-secret'
  /** Written to the agent's environment file only with `bootstrap-secret`. */
  bootstrapSecret: string | null
}

/** Where the user data writes the agent's environment, and the systemd drop-in that makes its unit read it. */
export const hostAgentFiles = {
  unit: 'fractal-host-agent.service',
  environmentFile: '/etc/fractal/host-agent.env',
  dropInDir: '/etc/systemd/system/fractal-host-agent.service.d',
  dropIn: '/etc/systemd/system/fractal-host-agent.service.d/10-fractal-environment.conf'
} as const

/** `NAME=value`, for a value safe in a quoted heredoc and in a systemd EnvironmentFile (no quoting, no `$`, no space). */
function assignment (name: string, value: string): string {
  if (!/^[\w.:/@%+=,~?&#-]+$/.test(value)) throw new Error(`host user data: ${name} has characters an environment file line cannot carry as they are`)
  return `${name}=${value}`
}

/**
 * The user data of a host (bash, run once by cloud-init as root). It joins its ECS cluster, writes the host
 * agent's environment to an EnvironmentFile (mode 0600) that a systemd drop-in hands to the agent's unit,
 * and starts the agent without waiting for it. An AMI without the agent's unit still joins ECS: the script
 * says so on stderr and ends well (under `set -e`, a failing `systemctl` would end it before that).
 */
export function hostUserData (cluster: { name: string, region: string }, agent: HostAgentSettings): string {
  const { unit, environmentFile, dropInDir, dropIn } = hostAgentFiles
  const environment = [
    assignment('FRACTAL_API_URL', agent.apiUrl),
    assignment('FRACTAL_CLUSTER', cluster.name),
    assignment('FRACTAL_REGION', cluster.region),
    assignment('FRACTAL_HANDSHAKE', agent.handshake),
    ...(agent.handshake === 'bootstrap-secret' && agent.bootstrapSecret ? [assignment('FRACTAL_BOOTSTRAP_SECRET', agent.bootstrapSecret)] : [])
  ]
  return [
    '#!/bin/bash',
    'set -euo pipefail',
    "cat >> /etc/ecs/ecs.config <<'FRACTAL_ECS'",
    assignment('ECS_CLUSTER', cluster.name),
    'ECS_ENABLE_GPU_SUPPORT=true',
    'FRACTAL_ECS',
    `install -d -m 0755 ${environmentFile.slice(0, environmentFile.lastIndexOf('/'))}`,
    // 0600 before anything is written to it: it may carry the bootstrap secret.
    `install -m 0600 /dev/null ${environmentFile}`,
    `cat > ${environmentFile} <<'FRACTAL_ENV'`,
    ...environment,
    'FRACTAL_ENV',
    `install -d -m 0755 ${dropInDir}`,
    `cat > ${dropIn} <<'FRACTAL_UNIT'`,
    '[Service]',
    `EnvironmentFile=${environmentFile}`,
    'FRACTAL_UNIT',
    `if systemctl cat ${unit} > /dev/null 2>&1; then`,
    '  systemctl daemon-reload',
    // --no-block: the unit may be ordered after cloud-init, which waits for this script to end.
    `  systemctl enable --now --no-block ${unit} || echo "fractal: ${unit} did not start (journalctl -u ${unit})" >&2`,
    'else',
    `  echo "fractal: this AMI has no ${unit}; the host joins ECS, but no host agent calls ${agent.apiUrl}" >&2`,
    'fi',
    ''
  ].join('\n')
}

interface SimCluster {
  spec: ClusterSpec
  refreshes?: Map<string, number>
  launchTemplateId?: string
  /** The AMI of each launch template version (index + 1), the version the group launches, versions per token. */
  versions: string[]
  inForce: number
  tokens: Map<string, string>
  groupArn?: string
  capacityProvider?: string
  cluster: boolean
  size: { min: number, max: number, desired: number }
}

export function createSimulatedFleetProvider (): FleetProvider {
  const clusters = new Map<string, SimCluster>()
  let n = 0
  const of = (spec: ClusterSpec) => {
    let c = clusters.get(spec.name)
    if (!c) clusters.set(spec.name, c = { spec, versions: [spec.ami], inForce: 1, tokens: new Map(), cluster: false, size: { min: spec.minSize, max: spec.maxSize, desired: spec.minSize } })
    return c
  }
  const group = (name: string) => {
    const c = clusters.get(name)
    if (!c?.groupArn) throw Object.assign(new Error(`no Auto Scaling group named ${name}`), { name: 'ValidationError', $fault: 'client' })
    return c
  }
  return {
    kind: 'simulated',
    async createLaunchTemplate (spec) {
      const c = of(spec)
      c.launchTemplateId ??= `lt-${(++n).toString(16).padStart(17, '0')}`
      return { launchTemplateId: c.launchTemplateId, launchTemplateVersion: String(c.inForce) }
    },
    async createAutoScalingGroup (spec) {
      const c = of(spec)
      c.groupArn ??= `arn:aws:autoscaling:${spec.region}:000000000000:autoScalingGroup:sim:autoScalingGroupName/${spec.name}`
      return { autoScalingGroupArn: c.groupArn }
    },
    async createCapacityProvider (spec) {
      const c = of(spec)
      c.capacityProvider ??= `${spec.name}-capacity`
      return { capacityProvider: c.capacityProvider }
    },
    async createCluster (spec) { of(spec).cluster = true },
    async resizeGroup (_region, name, size) {
      const c = clusters.get(name)
      if (c) c.size = { min: size.min, max: size.max, desired: size.desired ?? Math.min(Math.max(c.size.desired, size.min), size.max) }
    },
    async drainGroup (_region, name) {
      const c = clusters.get(name)
      if (c) c.size = { min: 0, max: 0, desired: 0 }
    },
    async groupInstances (_region, name) { return clusters.get(name)?.size.desired ?? 0 },
    async deleteCluster (_region, name) { const c = clusters.get(name); if (c) c.cluster = false },
    async deleteCapacityProvider (_region, capacityProvider) {
      for (const c of clusters.values()) if (c.capacityProvider === capacityProvider) delete c.capacityProvider
    },
    async deleteAutoScalingGroup (_region, name) { const c = clusters.get(name); if (c) delete c.groupArn },
    async deleteLaunchTemplate (_region, id) {
      for (const [name, c] of clusters) {
        if (c.launchTemplateId === id) {
          delete c.launchTemplateId
          if (!c.groupArn && !c.capacityProvider && !c.cluster) clusters.delete(name)
        }
      }
    },
    async createAmiVersion (_region, name, _launchTemplateId, ami, token) {
      const c = group(name)
      let version = c.tokens.get(token)
      if (!version) {
        c.versions.push(ami)
        c.tokens.set(token, version = String(c.versions.length))
      }
      return { version }
    },
    async startAmiRefresh (_region, name) {
      const c = group(name)
      c.refreshes ??= new Map()
      const refreshId = `refresh-${++n}`
      c.refreshes.set(refreshId, 0)
      return { refreshId }
    },
    async amiRefreshStatus (_region, name, refreshId) {
      // Each look moves a simulated refresh on by half.
      const polls = (clusters.get(name)?.refreshes?.get(refreshId) ?? 1) + 1
      clusters.get(name)?.refreshes?.set(refreshId, polls)
      return polls >= 3 ? { state: 'successful', percent: 100 } : { state: 'in_progress', percent: 50 * (polls - 1) }
    },
    async adoptVersion (_region, name, _launchTemplateId, version) {
      const c = group(name)
      c.inForce = Number(version)
      c.spec = { ...c.spec, ami: c.versions[c.inForce - 1] ?? c.spec.ami }
    },
    async usage (_region, name) {
      const c = clusters.get(name)
      return { tasks: 0, instances: c?.size.desired ?? 0, cpuLeft: (c?.size.desired ?? 0) * 4096, memoryLeftMb: (c?.size.desired ?? 0) * 15_000, desired: c?.size.desired ?? 0 }
    }
  }
}
