import {
  AutoScalingClient, CreateAutoScalingGroupCommand, DeleteAutoScalingGroupCommand, DescribeAutoScalingGroupsCommand,
  DescribeInstanceRefreshesCommand, SetInstanceProtectionCommand, StartInstanceRefreshCommand, UpdateAutoScalingGroupCommand,
  type AutoScalingGroup
} from '@aws-sdk/client-auto-scaling'
import {
  CreateLaunchTemplateCommand, CreateLaunchTemplateVersionCommand, DeleteLaunchTemplateCommand, DescribeLaunchTemplatesCommand, DescribeSubnetsCommand,
  EC2Client, ModifyLaunchTemplateCommand
} from '@aws-sdk/client-ec2'
import {
  CreateCapacityProviderCommand, CreateClusterCommand, DeleteCapacityProviderCommand, DeleteClusterCommand,
  DescribeClustersCommand, DescribeContainerInstancesCommand, ECSClient, ListContainerInstancesCommand
} from '@aws-sdk/client-ecs'
import type { FleetProvider } from './fleet.provider.js'

export interface AwsFleetOptions {
  maxAttempts: number
  /** Subnets of a region's Auto Scaling groups, comma-separated (FLEET_SUBNETS, parsed in routes/fleet/feature.ts); none: the default VPC's. */
  subnets: (region: string) => string | undefined
  /** Security groups of a region's hosts, comma-separated (FLEET_SECURITY_GROUPS). */
  securityGroups: (region: string) => string | undefined
  /** The hosts' IAM instance profile: a name, or an ARN (FLEET_INSTANCE_PROFILE). */
  instanceProfile: string
  /** Whether hosts get a public IPv4 address (FLEET_PUBLIC_IP). */
  publicIp: boolean
}

/** A setting that names nothing for a region: no retry mends it (isTransient says no). */
class FleetSettingMissing extends Error {
  override name = 'FleetSettingMissing'
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
  const defaultSubnets = new Map<string, Promise<string>>()
  /**
   * The default subnets of the region's default VPC, one per Availability Zone ("default-for-az"), looked up
   * once per region: https://docs.aws.amazon.com/vpc/latest/userguide/default-vpc.html
   */
  const subnetsOf = (region: string): Promise<string> => {
    const configured = options.subnets(region)
    if (configured) return Promise.resolve(configured)
    let found = defaultSubnets.get(region)
    if (!found) {
      found = of(region).ec2.send(new DescribeSubnetsCommand({ Filters: [{ Name: 'default-for-az', Values: ['true'] }] })).then((out) => {
        const ids = (out.Subnets ?? []).filter((s) => s.State !== 'pending' && s.SubnetId)
          .sort((a, b) => (a.AvailabilityZone ?? '').localeCompare(b.AvailabilityZone ?? '')).map((s) => s.SubnetId!)
        if (ids.length === 0) throw new FleetSettingMissing(`FLEET_SUBNETS names no subnet for ${region}, and ${region} has no default VPC with default subnets: set FLEET_SUBNETS`)
        return ids.join(',')
      })
      defaultSubnets.set(region, found)
      // A failed look-up is asked again next time.
      found.catch(() => defaultSubnets.delete(region))
    }
    return found
  }
  /** The version a group launches now, as a number (a group made before groups were pinned follows `$Latest` or `$Default`). */
  const versionInForce = async (region: string, name: string, launchTemplateId: string) => {
    const group = await describeGroup(region, name)
    if (!group) throw Object.assign(new Error(`AutoScalingGroup name not found - AutoScalingGroup '${name}' not found`), { name: 'ValidationError', $fault: 'client' })
    const version = group.LaunchTemplate?.Version ?? '$Default'
    if (/^\d+$/.test(version)) return { version, pinned: true }
    const template = (await of(region).ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateIds: [launchTemplateId] }))).LaunchTemplates?.[0]
    const number = version === '$Latest' ? template?.LatestVersionNumber : template?.DefaultVersionNumber
    if (!number) throw new Error(`launch template ${launchTemplateId} has no ${version} version`)
    return { version: String(number), pinned: false }
  }
  /** Lifts the scale-in protection of the group's hosts that have it (50 a call: the API's limit). */
  const unprotect = async (region: string, group: AutoScalingGroup) => {
    const ids = (group.Instances ?? []).filter((i) => i.ProtectedFromScaleIn && i.InstanceId).map((i) => i.InstanceId!)
    for (let i = 0; i < ids.length; i += 50) {
      await of(region).asg.send(new SetInstanceProtectionCommand({ AutoScalingGroupName: group.AutoScalingGroupName, InstanceIds: ids.slice(i, i + 50), ProtectedFromScaleIn: false }))
    }
  }
  const pointGroupAt = (region: string, name: string, launchTemplateId: string, version: string) =>
    of(region).asg.send(new UpdateAutoScalingGroupCommand({ AutoScalingGroupName: name, LaunchTemplate: { LaunchTemplateId: launchTemplateId, Version: version } }))

  return {
    kind: 'aws',
    async createLaunchTemplate (spec) {
      const groups = options.securityGroups(spec.region)?.split(',').filter(Boolean) ?? []
      if (groups.length === 0) throw new FleetSettingMissing(`FLEET_SECURITY_GROUPS names no security group for ${spec.region}`)
      try {
        const out = await of(spec.region).ec2.send(new CreateLaunchTemplateCommand({
          LaunchTemplateName: spec.name,
          LaunchTemplateData: {
            ImageId: spec.ami,
            InstanceType: spec.instanceType as never,
            UserData: Buffer.from(spec.userData).toString('base64'),
            // What the ECS agent registers the host with (and pulls images with).
            IamInstanceProfile: options.instanceProfile.startsWith('arn:') ? { Arn: options.instanceProfile } : { Name: options.instanceProfile },
            // A public address is a setting of the network interface, and with an interface the groups go on it,
            // not in SecurityGroupIds (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RequestLaunchTemplateData.html).
            NetworkInterfaces: [{ DeviceIndex: 0, AssociatePublicIpAddress: options.publicIp, Groups: groups, DeleteOnTermination: true }],
            // IMDSv2 only, one hop: the host (its ECS and Fractal agents) reads the metadata, the containers behind
            // Docker's bridge cannot (neither the instance role's credentials nor the user data).
            MetadataOptions: { HttpTokens: 'required', HttpPutResponseHopLimit: 1, HttpEndpoint: 'enabled' },
            TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'fractal:cluster', Value: spec.name }] }]
          }
        }))
        return { launchTemplateId: out.LaunchTemplate!.LaunchTemplateId!, launchTemplateVersion: String(out.LaunchTemplate!.LatestVersionNumber ?? 1) }
      } catch (err) {
        if (!exists(err)) throw err
        const found = (await of(spec.region).ec2.send(new DescribeLaunchTemplatesCommand({ LaunchTemplateNames: [spec.name] }))).LaunchTemplates![0]!
        return { launchTemplateId: found.LaunchTemplateId!, launchTemplateVersion: String(found.DefaultVersionNumber ?? 1) }
      }
    },
    async createAutoScalingGroup (spec, launchTemplateId, launchTemplateVersion) {
      try {
        const subnets = await subnetsOf(spec.region)
        await of(spec.region).asg.send(new CreateAutoScalingGroupCommand({
          AutoScalingGroupName: spec.name,
          // A version number, never $Latest: a new version is live only once its instance refresh succeeds.
          LaunchTemplate: { LaunchTemplateId: launchTemplateId, Version: launchTemplateVersion },
          MinSize: spec.minSize,
          MaxSize: spec.maxSize,
          DesiredCapacity: spec.minSize,
          // ECS managed termination protection needs it: ECS decides which hosts may go.
          NewInstancesProtectedFromScaleIn: true,
          VPCZoneIdentifier: subnets,
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
    async drainGroup (region, name) {
      const group = await describeGroup(region, name)
      if (!group) throw Object.assign(new Error(`AutoScalingGroup name not found - AutoScalingGroup '${name}' not found`), { name: 'ValidationError', $fault: 'client' })
      // Unprotected before the sizes change: a scale in skips protected hosts.
      await unprotect(region, group)
      await of(region).asg.send(new UpdateAutoScalingGroupCommand({ AutoScalingGroupName: name, MinSize: 0, MaxSize: 0, DesiredCapacity: 0, NewInstancesProtectedFromScaleIn: false }))
    },
    async groupInstances (region, name) {
      const group = await describeGroup(region, name)
      // One that launched protected while the group was drained.
      if (group) await unprotect(region, group)
      return group?.Instances?.length ?? 0
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
    async createAmiVersion (region, name, launchTemplateId, ami, token) {
      const inForce = await versionInForce(region, name, launchTemplateId)
      if (!inForce.pinned) await pointGroupAt(region, name, launchTemplateId, inForce.version)
      // ClientToken: a retry whose first answer was lost gets the same version, not another one.
      const out = await of(region).ec2.send(new CreateLaunchTemplateVersionCommand({
        LaunchTemplateId: launchTemplateId,
        SourceVersion: inForce.version,
        ClientToken: token,
        VersionDescription: `AMI ${ami} (job ${token})`,
        LaunchTemplateData: { ImageId: ami }
      }))
      return { version: String(out.LaunchTemplateVersion!.VersionNumber!) }
    },
    async startAmiRefresh (region, name, launchTemplateId, version, minHealthyPercent) {
      const { asg } = of(region)
      try {
        const out = await asg.send(new StartInstanceRefreshCommand({
          AutoScalingGroupName: name,
          Strategy: 'Rolling',
          DesiredConfiguration: { LaunchTemplate: { LaunchTemplateId: launchTemplateId, Version: version } },
          // Every host is protected from scale in (ECS managed termination protection), and an operator may have
          // set some on standby: with the defaults (Wait) the refresh waits an hour for them, then fails
          // (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_RefreshPreferences.html). AutoRollback:
          // a failed refresh puts back the hosts it replaced (possible because the group names a version number).
          Preferences: {
            MinHealthyPercentage: minHealthyPercent,
            InstanceWarmup: 300,
            SkipMatching: true,
            AutoRollback: true,
            ScaleInProtectedInstances: 'Refresh',
            StandbyInstances: 'Terminate'
          }
        }))
        return { refreshId: out.InstanceRefreshId! }
      } catch (err) {
        if (!/InstanceRefreshInProgress/i.test(errorText(err))) throw err
        const running = await asg.send(new DescribeInstanceRefreshesCommand({ AutoScalingGroupName: name, MaxRecords: 1 }))
        return { refreshId: running.InstanceRefreshes![0]!.InstanceRefreshId! }
      }
    },
    async adoptVersion (region, name, launchTemplateId, version) {
      await of(region).ec2.send(new ModifyLaunchTemplateCommand({ LaunchTemplateId: launchTemplateId, DefaultVersion: version }))
      await pointGroupAt(region, name, launchTemplateId, version)
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
