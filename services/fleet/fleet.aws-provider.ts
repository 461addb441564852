import {
  AutoScalingClient, CreateAutoScalingGroupCommand, DeleteAutoScalingGroupCommand, DescribeAutoScalingGroupsCommand,
  DescribeInstanceRefreshesCommand, StartInstanceRefreshCommand, UpdateAutoScalingGroupCommand
} from '@aws-sdk/client-auto-scaling'
import {
  CreateLaunchTemplateCommand, CreateLaunchTemplateVersionCommand, DeleteLaunchTemplateCommand, DescribeLaunchTemplatesCommand, EC2Client
} from '@aws-sdk/client-ec2'
import {
  CreateCapacityProviderCommand, CreateClusterCommand, DeleteCapacityProviderCommand, DeleteClusterCommand,
  DescribeClustersCommand, DescribeContainerInstancesCommand, ECSClient, ListContainerInstancesCommand
} from '@aws-sdk/client-ecs'
import type { FleetProvider } from './fleet.provider.js'

export interface AwsFleetOptions {
  maxAttempts: number
  /** Subnets of a region's Auto Scaling groups, comma-separated (FLEET_SUBNETS, parsed in plugins/fleet.ts). */
  subnets: (region: string) => string | undefined
}

const errorName = (err: unknown) => (err as { name?: string }).name ?? ''
const errorText = (err: unknown) => `${errorName(err)} ${(err as Error).message ?? ''}`
/** A delete of something already gone, or a create of something that exists: both are fine. */
const isGone = (err: unknown) => /not ?found|does not exist|ValidationError.*not found/i.test(errorText(err))
const exists = (err: unknown) => /already ?exists|AlreadyExistsFault/i.test(errorText(err))

/** EC2, Auto Scaling and ECS through the official v3 SDK clients, one of each per region. */
export function createAwsFleetProvider (options: AwsFleetOptions): FleetProvider {
  const clients = new Map<string, { ec2: EC2Client, asg: AutoScalingClient, ecs: ECSClient }>()
  const of = (region: string) => {
    let c = clients.get(region)
    if (!c) {
      const config = { region, maxAttempts: options.maxAttempts }
      clients.set(region, c = { ec2: new EC2Client(config), asg: new AutoScalingClient(config), ecs: new ECSClient(config) })
    }
    return c
  }
  const describeGroup = async (region: string, name: string) =>
    (await of(region).asg.send(new DescribeAutoScalingGroupsCommand({ AutoScalingGroupNames: [name] }))).AutoScalingGroups?.[0]

  return {
    kind: 'aws',
    async createLaunchTemplate (spec) {
      try {
        const out = await of(spec.region).ec2.send(new CreateLaunchTemplateCommand({
          LaunchTemplateName: spec.name,
          LaunchTemplateData: {
            ImageId: spec.ami,
            InstanceType: spec.instanceType as never,
            UserData: Buffer.from(spec.userData).toString('base64'),
            TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'fractal:cluster', Value: spec.name }] }]
          }
        }))
        return { launchTemplateId: out.LaunchTemplate!.LaunchTemplateId! }
      } catch (err) {
        if (!exists(err)) throw err
        const found = await of(spec.region).ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [spec.name] }))
        return { launchTemplateId: found.LaunchTemplates![0]!.LaunchTemplateId! }
      }
    },
    async createAutoScalingGroup (spec, launchTemplateId) {
      try {
        const subnets = options.subnets(spec.region)
        await of(spec.region).asg.send(new CreateAutoScalingGroupCommand({
          AutoScalingGroupName: spec.name,
          LaunchTemplate: { LaunchTemplateId: launchTemplateId, Version: '$Latest' },
          MinSize: spec.minSize,
          MaxSize: spec.maxSize,
          DesiredCapacity: spec.minSize,
          // ECS managed termination protection needs it: ECS decides which hosts may go.
          NewInstancesProtectedFromScaleIn: true,
          ...(subnets ? { VPCZoneIdentifier: subnets } : {}),
          Tags: [{ Key: 'fractal:cluster', Value: spec.name, PropagateAtLaunch: true }]
        }))
      } catch (err) {
        if (!exists(err)) throw err
      }
      const group = await describeGroup(spec.region, spec.name)
      if (!group?.AutoScalingGroupARN) throw Object.assign(new Error(`Auto Scaling group ${spec.name} not visible yet`), { $retryable: {} })
      return { autoScalingGroupArn: group.AutoScalingGroupARN }
    },
    async createCapacityProvider (spec, autoScalingGroupArn) {
      const name = `${spec.name}-capacity`
      try {
        await of(spec.region).ecs.send(new CreateCapacityProviderCommand({
          name,
          autoScalingGroupProvider: {
            autoScalingGroupArn,
            managedScaling: { status: 'ENABLED', targetCapacity: 100 },
            managedTerminationProtection: 'ENABLED'
          },
          tags: [{ key: 'fractal:cluster', value: spec.name }]
        }))
      } catch (err) {
        if (!exists(err)) throw err
      }
      return { capacityProvider: name }
    },
    async createCluster (spec, capacityProvider) {
      await of(spec.region).ecs.send(new CreateClusterCommand({
        clusterName: spec.name,
        capacityProviders: [capacityProvider],
        defaultCapacityProviderStrategy: [{ capacityProvider, weight: 1 }],
        tags: [{ key: 'fractal:cluster', value: spec.name }]
      }))
    },
    async resizeGroup (region, name, size) {
      await of(region).asg.send(new UpdateAutoScalingGroupCommand({
        AutoScalingGroupName: name, MinSize: size.min, MaxSize: size.max, ...(size.desired !== undefined ? { DesiredCapacity: size.desired } : {})
      }))
    },
    async groupInstances (region, name) {
      return (await describeGroup(region, name))?.Instances?.length ?? 0
    },
    async deleteCluster (region, name) {
      try { await of(region).ecs.send(new DeleteClusterCommand({ cluster: name })) } catch (err) { if (!isGone(err)) throw err }
    },
    async deleteCapacityProvider (region, capacityProvider) {
      try { await of(region).ecs.send(new DeleteCapacityProviderCommand({ capacityProvider })) } catch (err) { if (!isGone(err)) throw err }
    },
    async deleteAutoScalingGroup (region, name) {
      try { await of(region).asg.send(new DeleteAutoScalingGroupCommand({ AutoScalingGroupName: name, ForceDelete: true })) } catch (err) { if (!isGone(err)) throw err }
    },
    async deleteLaunchTemplate (region, launchTemplateId) {
      try { await of(region).ec2.send(new DeleteLaunchTemplateCommand({ LaunchTemplateId: launchTemplateId })) } catch (err) { if (!isGone(err)) throw err }
    },
    async startAmiRefresh (region, name, launchTemplateId, ami, minHealthyPercent) {
      const { ec2, asg } = of(region)
      await ec2.send(new CreateLaunchTemplateVersionCommand({ LaunchTemplateId: launchTemplateId, SourceVersion: '$Latest', LaunchTemplateData: { ImageId: ami } }))
      try {
        const out = await asg.send(new StartInstanceRefreshCommand({
          AutoScalingGroupName: name,
          Strategy: 'Rolling',
          DesiredConfiguration: { LaunchTemplate: { LaunchTemplateId: launchTemplateId, Version: '$Latest' } },
          Preferences: { MinHealthyPercentage: minHealthyPercent, InstanceWarmup: 300 }
        }))
        return { refreshId: out.InstanceRefreshId! }
      } catch (err) {
        if (!/InstanceRefreshInProgress/i.test(errorText(err))) throw err
        const running = await asg.send(new DescribeInstanceRefreshesCommand({ AutoScalingGroupName: name, MaxRecords: 1 }))
        return { refreshId: running.InstanceRefreshes![0]!.InstanceRefreshId! }
      }
    },
    async amiRefreshStatus (region, name, refreshId) {
      const out = await of(region).asg.send(new DescribeInstanceRefreshesCommand({ AutoScalingGroupName: name, InstanceRefreshIds: [refreshId] }))
      const refresh = out.InstanceRefreshes?.[0]
      const status = refresh?.Status ?? 'Failed'
      if (status === 'Successful') return { state: 'successful', percent: 100 }
      if (/Failed|Cancel|Rollback/.test(status)) return { state: 'failed', percent: refresh?.PercentageComplete ?? 0, reason: refresh?.StatusReason ?? status }
      return { state: 'in_progress', percent: refresh?.PercentageComplete ?? 0 }
    },
    async usage (region, name) {
      const { ecs } = of(region)
      const cluster = (await ecs.send(new DescribeClustersCommand({ clusters: [name] }))).clusters?.[0]
      const arns = (await ecs.send(new ListContainerInstancesCommand({ cluster: name, maxResults: 100 }))).containerInstanceArns ?? []
      const instances = arns.length > 0 ? (await ecs.send(new DescribeContainerInstancesCommand({ cluster: name, containerInstances: arns }))).containerInstances ?? [] : []
      const left = (resource: string) => instances.reduce((sum, i) => sum + (i.remainingResources?.find((r) => r.name === resource)?.integerValue ?? 0), 0)
      const group = await describeGroup(region, name)
      return {
        tasks: cluster?.runningTasksCount ?? 0,
        instances: cluster?.registeredContainerInstancesCount ?? 0,
        cpuLeft: left('CPU'),
        memoryLeftMb: left('MEMORY'),
        desired: group?.DesiredCapacity ?? 0
      }
    }
  }
}
