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
  createLaunchTemplate (spec: ClusterSpec): Promise<{ launchTemplateId: string }>
  createAutoScalingGroup (spec: ClusterSpec, launchTemplateId: string): Promise<{ autoScalingGroupArn: string }>
  createCapacityProvider (spec: ClusterSpec, autoScalingGroupArn: string): Promise<{ capacityProvider: string }>
  createCluster (spec: ClusterSpec, capacityProvider: string): Promise<void>
  resizeGroup (region: string, name: string, size: { min: number, max: number, desired?: number }): Promise<void>
  /** Instances still in the group (a teardown waits for zero). */
  groupInstances (region: string, name: string): Promise<number>
  /** Each delete is idempotent: a resource already gone is fine. */
  deleteCluster (region: string, name: string): Promise<void>
  deleteCapacityProvider (region: string, capacityProvider: string): Promise<void>
  deleteAutoScalingGroup (region: string, name: string): Promise<void>
  deleteLaunchTemplate (region: string, launchTemplateId: string): Promise<void>
  usage (region: string, name: string): Promise<ClusterUsageSnapshot>
  /**
   * A new launch template version on `ami`, then an instance refresh of the group onto it (keeping
   * `minHealthyPercent` of the hosts in service). Idempotent: a refresh already running is returned.
   */
  startAmiRefresh (region: string, name: string, launchTemplateId: string, ami: string, minHealthyPercent: number): Promise<{ refreshId: string }>
  amiRefreshStatus (region: string, name: string, refreshId: string): Promise<{ state: 'in_progress' | 'successful' | 'failed', percent: number, reason?: string }>
}

/** The user data of a host: it joins its ECS cluster and starts the host agent with the bootstrap secret. */
export function hostUserData (clusterName: string, apiUrl: string): string {
  return [
    '#!/bin/bash',
    'set -euo pipefail',
    `echo "ECS_CLUSTER=${clusterName}" >> /etc/ecs/ecs.config`,
    'echo "ECS_ENABLE_GPU_SUPPORT=true" >> /etc/ecs/ecs.config',
    `FRACTAL_API_URL=${apiUrl} FRACTAL_CLUSTER=${clusterName} systemctl start fractal-host-agent`
  ].join('\n')
}

interface SimCluster { spec: ClusterSpec, refreshes?: Map<string, number>, launchTemplateId?: string, groupArn?: string, capacityProvider?: string, cluster: boolean, size: { min: number, max: number, desired: number } }

export function createSimulatedFleetProvider (): FleetProvider {
  const clusters = new Map<string, SimCluster>()
  let n = 0
  const of = (spec: ClusterSpec) => {
    let c = clusters.get(spec.name)
    if (!c) clusters.set(spec.name, c = { spec, cluster: false, size: { min: spec.minSize, max: spec.maxSize, desired: spec.minSize } })
    return c
  }
  return {
    kind: 'simulated',
    async createLaunchTemplate (spec) {
      const c = of(spec)
      c.launchTemplateId ??= `lt-${(++n).toString(16).padStart(17, '0')}`
      return { launchTemplateId: c.launchTemplateId }
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
    async startAmiRefresh (_region, name, _launchTemplateId, ami) {
      const c = clusters.get(name)
      if (!c) throw Object.assign(new Error(`no Auto Scaling group named ${name}`), { name: 'ValidationError', $fault: 'client' })
      c.spec = { ...c.spec, ami }
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
    async usage (_region, name) {
      const c = clusters.get(name)
      return { tasks: 0, instances: c?.size.desired ?? 0, cpuLeft: (c?.size.desired ?? 0) * 4096, memoryLeftMb: (c?.size.desired ?? 0) * 15_000, desired: c?.size.desired ?? 0 }
    }
  }
}
