// A small stateful model of what a cluster is made of on AWS, cut at the SDK boundary with aws-sdk-client-mock:
// EC2 launch templates, Auto Scaling groups and their instances, ECS capacity providers and clusters (and the
// tasks on them, for StopTask). The product's real EC2Client/AutoScalingClient/ECSClient send their real
// commands and this answers them the way the services would: names are unique per region ("already exists"),
// deletes of what is gone answer "not found", an ECS cluster with container instances cannot be deleted, a
// capacity provider in use by a cluster cannot be deleted, instances scaled in stay "Terminating" until the
// test lets them go (`drain: 'hold'`). A test can make any command throttle or fail, then look at the calls
// the app made (in order) and at what exists.
//
// Besides, what moto (test/cloud/) does not emulate, each as the AWS documentation describes it:
// - launch template versions: a version copies its SourceVersion's data and overrides it with its own
//   (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_CreateLaunchTemplateVersion.html), a
//   repeated ClientToken answers the version it made the first time (https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html),
//   ModifyLaunchTemplate sets the default version;
// - default subnets: a region's default VPC has one default subnet per Availability Zone
//   (https://docs.aws.amazon.com/vpc/latest/userguide/default-vpc.html), unless the test removes it;
// - instance refreshes (https://docs.aws.amazon.com/autoscaling/ec2/APIReference/API_StartInstanceRefresh.html,
//   API_RefreshPreferences.html): one at a time per group (InstanceRefreshInProgress); with the default
//   ScaleInProtectedInstances (Wait), protected instances make it wait an hour and fail (played at once:
//   "Failed"); a successful one replaces the instances and gives the group the desired configuration
//   (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-overview.html); a failed one
//   with AutoRollback ends RollbackSuccessful, the group keeping its configuration
//   (https://docs.aws.amazon.com/autoscaling/ec2/userguide/instance-refresh-rollback.html).
//
// It mocks ECSClient and EC2Client too, like test/helpers/ecs-model.ts: never use both in one test file.
import {
  AlreadyExistsFault, AutoScalingClient, AutoScalingServiceException, CreateAutoScalingGroupCommand, DeleteAutoScalingGroupCommand,
  DescribeAutoScalingGroupsCommand, DescribeInstanceRefreshesCommand, InstanceRefreshInProgressFault, ResourceInUseFault, SetInstanceProtectionCommand,
  StartInstanceRefreshCommand, UpdateAutoScalingGroupCommand, type SetInstanceProtectionCommandInput,
  type CreateAutoScalingGroupCommandInput, type DeleteAutoScalingGroupCommandInput, type DescribeAutoScalingGroupsCommandInput,
  type DescribeInstanceRefreshesCommandInput, type StartInstanceRefreshCommandInput, type UpdateAutoScalingGroupCommandInput
} from '@aws-sdk/client-auto-scaling'
import {
  CreateLaunchTemplateCommand, CreateLaunchTemplateVersionCommand, DeleteLaunchTemplateCommand, DescribeLaunchTemplatesCommand, DescribeSubnetsCommand,
  EC2Client, EC2ServiceException, ModifyLaunchTemplateCommand,
  type CreateLaunchTemplateCommandInput, type CreateLaunchTemplateVersionCommandInput, type DeleteLaunchTemplateCommandInput,
  type DescribeLaunchTemplatesCommandInput, type ModifyLaunchTemplateCommandInput, type RequestLaunchTemplateData
} from '@aws-sdk/client-ec2'
import {
  ClientException, ClusterContainsContainerInstancesException, ClusterContainsTasksException, ClusterNotFoundException,
  CreateCapacityProviderCommand, CreateClusterCommand, DeleteCapacityProviderCommand, DeleteClusterCommand, DescribeClustersCommand,
  DescribeContainerInstancesCommand, ECSClient, ECSServiceException, InvalidParameterException, ListContainerInstancesCommand,
  ResourceInUseException, StopTaskCommand,
  type CreateCapacityProviderCommandInput, type CreateClusterCommandInput, type DeleteCapacityProviderCommandInput,
  type DeleteClusterCommandInput, type DescribeClustersCommandInput, type DescribeContainerInstancesCommandInput,
  type ListContainerInstancesCommandInput, type StopTaskCommandInput
} from '@aws-sdk/client-ecs'
import { mockClient } from 'aws-sdk-client-mock'

export type Service = 'ec2' | 'autoscaling' | 'ecs'

const commands = {
  CreateLaunchTemplate: 'ec2',
  CreateLaunchTemplateVersion: 'ec2',
  ModifyLaunchTemplate: 'ec2',
  DescribeLaunchTemplates: 'ec2',
  DeleteLaunchTemplate: 'ec2',
  DescribeSubnets: 'ec2',
  StartInstanceRefresh: 'autoscaling',
  SetInstanceProtection: 'autoscaling',
  DescribeInstanceRefreshes: 'autoscaling',
  CreateAutoScalingGroup: 'autoscaling',
  DescribeAutoScalingGroups: 'autoscaling',
  UpdateAutoScalingGroup: 'autoscaling',
  DeleteAutoScalingGroup: 'autoscaling',
  CreateCapacityProvider: 'ecs',
  DeleteCapacityProvider: 'ecs',
  CreateCluster: 'ecs',
  DeleteCluster: 'ecs',
  DescribeClusters: 'ecs',
  ListContainerInstances: 'ecs',
  DescribeContainerInstances: 'ecs',
  StopTask: 'ecs'
} as const satisfies Record<string, Service>

export type FleetCommandName = keyof typeof commands

/** One call the app made: what it sent, to which region, and whether it went through. */
export interface ModelCall { command: FleetCommandName, input: Record<string, unknown>, region: string, ok: boolean, error?: Error }

export interface ModelLaunchTemplate {
  id: string
  name: string
  region: string
  input: CreateLaunchTemplateCommandInput | null
  /** The data of each version (index + 1), the default version, versions by ClientToken. */
  versions: RequestLaunchTemplateData[]
  defaultVersion: number
  tokens: Map<string, number>
  deleted: boolean
}
export interface ModelRefresh {
  id: string
  group: string
  input: StartInstanceRefreshCommandInput
  status: 'Pending' | 'InProgress' | 'Successful' | 'Failed' | 'RollbackSuccessful'
  reason?: string
  /** DescribeInstanceRefreshes seen before it ends. */
  looks: number
}
export interface ModelInstance { instanceId: string, containerInstanceArn: string, lifecycle: 'InService' | 'Terminating', protectedFromScaleIn: boolean }
export interface ModelGroup {
  name: string
  arn: string
  region: string
  launchTemplateId: string | undefined
  /** What the group launches: a version number, `$Latest` or `$Default`. */
  launchTemplateVersion: string
  /** New instances launch protected from scale in. */
  newInstancesProtected: boolean
  minSize: number
  maxSize: number
  desired: number
  instances: ModelInstance[]
  input: CreateAutoScalingGroupCommandInput | null
  deleted: boolean
}
export interface ModelCapacityProvider { name: string, arn: string, region: string, groupArn: string, input: CreateCapacityProviderCommandInput, deleted: boolean }
export interface ModelCluster { name: string, arn: string, region: string, capacityProviders: string[], input: CreateClusterCommandInput, deleted: boolean }
export interface ModelTask { taskArn: string, cluster: string, region: string, status: 'RUNNING' | 'STOPPED', stoppedReason: string | null }

const account = '000000000000'
const meta = (httpStatusCode: number) => ({ httpStatusCode, attempts: 1 })

function serviceError (service: Service, name: string, message: string, fault: 'client' | 'server', status: number): Error {
  const Base = service === 'ec2' ? EC2ServiceException : service === 'autoscaling' ? AutoScalingServiceException : ECSServiceException
  return new Base({ name, $fault: fault, $metadata: meta(status), message })
}

/** The error the SDK throws for a throttled call (retryable, HTTP 400). */
export function throttlingError (service: Service): Error {
  return Object.assign(serviceError(service, 'ThrottlingException', 'Rate exceeded', 'client', 400), { $retryable: { throttling: true } })
}

/** A client error no retry mends: ValidationError (Auto Scaling), InvalidParameterException (ECS), InvalidParameterValue (EC2). */
export function permanentError (service: Service, message = 'The request is not valid (fleet-model)'): Error {
  if (service === 'ecs') return new InvalidParameterException({ message, $metadata: meta(400) })
  return serviceError(service, service === 'ec2' ? 'InvalidParameterValue' : 'ValidationError', message, 'client', 400)
}

/** What a dropped connection looks like to the worker: a plain Error with a network code, nothing from AWS. */
export function connectionReset (): Error {
  return Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' })
}

/**
 * Starts the model: from now until `restore()` every EC2Client, AutoScalingClient and ECSClient in this
 * process talks to it. `drain`: what instances do when their group is scaled in. `instant` (default): they
 * are gone at once; `hold`: they stay in the group as `Terminating` (still listed, still registered with
 * ECS) until `terminateInstances()`, as real ones do for a minute or two.
 */
export function fleetModel (options: { drain?: 'instant' | 'hold' } = {}) {
  let drain = options.drain ?? 'instant'
  const ec2 = mockClient(EC2Client)
  const asg = mockClient(AutoScalingClient)
  const ecs = mockClient(ECSClient)
  const launchTemplates: ModelLaunchTemplate[] = []
  const groups: ModelGroup[] = []
  const capacityProviders: ModelCapacityProvider[] = []
  const clusters: ModelCluster[] = []
  const tasks: ModelTask[] = []
  const refreshes: ModelRefresh[] = []
  /** Groups whose next refresh fails (with AutoRollback: RollbackSuccessful), and why. */
  const refreshFailures = new Map<string, string>()
  /** Regions whose default VPC was deleted. */
  const noDefaultVpc = new Set<string>()
  const log: ModelCall[] = []
  const faults = new Map<FleetCommandName, Array<() => Error>>()
  /** Calls whose answer is lost after the work is done (the caller sees a dropped connection). */
  const lostAnswers = new Map<FleetCommandName, number>()
  let serial = 0
  /** What each host reports left (for the usage snapshot). */
  const hostResources = { cpu: 4096, memoryMb: 15000 }
  const next = () => ++serial

  const liveTemplate = (region: string, match: (lt: ModelLaunchTemplate) => boolean) => launchTemplates.find((lt) => !lt.deleted && lt.region === region && match(lt))
  const liveGroup = (region: string, name: string | undefined) => groups.find((g) => !g.deleted && g.region === region && g.name === name)
  const liveProvider = (region: string, ref: string | undefined) => capacityProviders.find((c) => !c.deleted && c.region === region && (c.name === ref || c.arn === ref))
  const clusterName = (ref: string | undefined) => (ref ?? 'default').replace(/^arn:aws:ecs:[^:]*:\d+:cluster\//, '')
  const liveCluster = (region: string, ref: string | undefined) => clusters.find((c) => !c.deleted && c.region === region && c.name === clusterName(ref))
  const clusterNotFound = () => new ClusterNotFoundException({ message: 'Cluster not found.', $metadata: meta(400) })
  const groupNotFound = (name: string | undefined) =>
    serviceError('autoscaling', 'ValidationError', `AutoScalingGroup name not found - AutoScalingGroup '${name}' not found`, 'client', 400)
  /** The hosts registered with an ECS cluster: the instances of the groups behind its capacity providers. */
  const hostsOf = (cluster: ModelCluster) => cluster.capacityProviders
    .map((cp) => liveProvider(cluster.region, cp))
    .flatMap((cp) => groups.filter((g) => !g.deleted && g.arn === cp?.groupArn))
    .flatMap((g) => g.instances)
  const runningTasksOf = (cluster: ModelCluster) => tasks.filter((t) => t.region === cluster.region && t.cluster === cluster.name && t.status === 'RUNNING')

  const newInstance = (group: ModelGroup): ModelInstance => {
    const n = next()
    return {
      instanceId: `i-${(0xb00000 + n).toString(16).padStart(17, '0')}`,
      containerInstanceArn: `arn:aws:ecs:${group.region}:${account}:container-instance/${group.name}/${n.toString(16).padStart(32, '0')}`,
      lifecycle: 'InService',
      protectedFromScaleIn: group.newInstancesProtected
    }
  }
  /**
   * The group runs `desired` instances: new ones launch, extra ones terminate (at once, or held). A scale in
   * never picks an instance protected from scale in, and may leave more than `desired`
   * (https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-instance-protection.html).
   */
  const settle = (group: ModelGroup) => {
    const inService = group.instances.filter((i) => i.lifecycle === 'InService')
    for (let i = inService.length; i < group.desired; i++) group.instances.push(newInstance(group))
    const extras = Math.max(0, inService.length - group.desired)
    for (const extra of inService.filter((i) => !i.protectedFromScaleIn).slice(0, extras)) extra.lifecycle = 'Terminating'
    if (drain === 'instant') group.instances = group.instances.filter((i) => i.lifecycle === 'InService')
  }
  const addLaunchTemplate = (region: string, name: string, input: CreateLaunchTemplateCommandInput | null) => {
    const lt: ModelLaunchTemplate = {
      id: `lt-${next().toString(16).padStart(17, '0')}`, name, region, input, versions: [input?.LaunchTemplateData ?? {}], defaultVersion: 1, tokens: new Map(), deleted: false
    }
    launchTemplates.push(lt)
    return lt
  }
  const addGroup = (region: string, name: string, fields: { launchTemplateId?: string, launchTemplateVersion?: string, minSize: number, maxSize: number, desired?: number }, input: CreateAutoScalingGroupCommandInput | null) => {
    const group: ModelGroup = {
      name,
      arn: `arn:aws:autoscaling:${region}:${account}:autoScalingGroup:${next().toString(16).padStart(8, '0')}-model:autoScalingGroupName/${name}`,
      region,
      launchTemplateId: fields.launchTemplateId,
      launchTemplateVersion: fields.launchTemplateVersion ?? '$Default',
      newInstancesProtected: input?.NewInstancesProtectedFromScaleIn ?? false,
      minSize: fields.minSize,
      maxSize: fields.maxSize,
      desired: fields.desired ?? fields.minSize,
      instances: [],
      input,
      deleted: false
    }
    groups.push(group)
    settle(group)
    return group
  }

  /** Records the call, throws a fault queued for the command if any, else answers through `fn`. */
  const handle = <I>(command: FleetCommandName, fn: (input: I, region: string) => unknown) =>
    async (input: I, getClient: () => { config: { region: unknown } }) => {
      const region = await (getClient().config.region as () => Promise<string>)()
      const call: ModelCall = { command, input: input as Record<string, unknown>, region, ok: false }
      log.push(call)
      const fault = faults.get(command)?.shift()
      if (fault) {
        call.error = fault()
        throw call.error
      }
      try {
        const out = await fn(input, region)
        call.ok = true
        const lost = lostAnswers.get(command) ?? 0
        if (lost > 0) {
          lostAnswers.set(command, lost - 1)
          throw connectionReset()
        }
        return { ...(out as object), $metadata: { httpStatusCode: 200 } }
      } catch (err) {
        call.error = err as Error
        throw err
      }
    }
  const queueFaults = (command: FleetCommandName, times: number, make: () => Error) => {
    faults.set(command, [...(faults.get(command) ?? []), ...Array.from({ length: times }, () => make)])
  }

  // EC2: launch templates.
  ec2.on(CreateLaunchTemplateCommand).callsFake(handle('CreateLaunchTemplate', (input: CreateLaunchTemplateCommandInput, region) => {
    const name = input.LaunchTemplateName!
    if (liveTemplate(region, (lt) => lt.name === name)) {
      throw serviceError('ec2', 'InvalidLaunchTemplateName.AlreadyExistsException', `Launch template name already in use. (${name})`, 'client', 400)
    }
    const lt = addLaunchTemplate(region, name, input)
    return { LaunchTemplate: { LaunchTemplateId: lt.id, LaunchTemplateName: name, DefaultVersionNumber: 1, LatestVersionNumber: 1 } }
  }))
  /** A version number (or $Latest / $Default) of a template, checked. */
  const versionOf = (lt: ModelLaunchTemplate, version: string | undefined) => {
    const n = version === '$Latest' ? lt.versions.length : version === undefined || version === '$Default' ? lt.defaultVersion : Number(version)
    if (!Number.isInteger(n) || n < 1 || n > lt.versions.length) {
      throw serviceError('ec2', 'InvalidLaunchTemplateId.VersionNotFound', `Could not find launch template version ${version} for ${lt.id}.`, 'client', 400)
    }
    return n
  }
  const templateById = (region: string, id: string | undefined) => {
    const lt = liveTemplate(region, (x) => x.id === id)
    if (!lt) throw serviceError('ec2', 'InvalidLaunchTemplateId.NotFound', `The specified launch template, with template ID ${id}, does not exist.`, 'client', 400)
    return lt
  }
  ec2.on(CreateLaunchTemplateVersionCommand).callsFake(handle('CreateLaunchTemplateVersion', (input: CreateLaunchTemplateVersionCommandInput, region) => {
    const lt = templateById(region, input.LaunchTemplateId)
    const again = input.ClientToken ? lt.tokens.get(input.ClientToken) : undefined
    const number = again ?? (() => {
      const source = input.SourceVersion === undefined ? {} : lt.versions[versionOf(lt, input.SourceVersion) - 1]!
      lt.versions.push({ ...source, ...input.LaunchTemplateData })
      if (input.ClientToken) lt.tokens.set(input.ClientToken, lt.versions.length)
      return lt.versions.length
    })()
    return { LaunchTemplateVersion: { LaunchTemplateId: lt.id, LaunchTemplateName: lt.name, VersionNumber: number, DefaultVersion: number === lt.defaultVersion, LaunchTemplateData: lt.versions[number - 1] } }
  }))
  ec2.on(ModifyLaunchTemplateCommand).callsFake(handle('ModifyLaunchTemplate', (input: ModifyLaunchTemplateCommandInput, region) => {
    const lt = templateById(region, input.LaunchTemplateId)
    if (input.DefaultVersion !== undefined) lt.defaultVersion = versionOf(lt, input.DefaultVersion)
    return { LaunchTemplate: { LaunchTemplateId: lt.id, LaunchTemplateName: lt.name, DefaultVersionNumber: lt.defaultVersion, LatestVersionNumber: lt.versions.length } }
  }))
  ec2.on(DescribeSubnetsCommand).callsFake(handle('DescribeSubnets', (input: { Filters?: Array<{ Name?: string, Values?: string[] }> }, region) => {
    const defaultOnly = input.Filters?.some((f) => f.Name === 'default-for-az' && f.Values?.includes('true'))
    if (!defaultOnly || noDefaultVpc.has(region)) return { Subnets: [] }
    return {
      Subnets: ['a', 'b'].map((zone) => ({
        SubnetId: `subnet-default-${region}-${zone}`, VpcId: `vpc-default-${region}`, AvailabilityZone: `${region}${zone}`, DefaultForAz: true, MapPublicIpOnLaunch: true, State: 'available' as const
      }))
    }
  }))
  ec2.on(DescribeLaunchTemplatesCommand).callsFake(handle('DescribeLaunchTemplates', (input: DescribeLaunchTemplatesCommandInput, region) => {
    const found = launchTemplates.filter((lt) => !lt.deleted && lt.region === region &&
      ((input.LaunchTemplateNames ?? []).includes(lt.name) || (input.LaunchTemplateIds ?? []).includes(lt.id)))
    const asked = (input.LaunchTemplateNames?.length ?? 0) + (input.LaunchTemplateIds?.length ?? 0)
    if (found.length < asked) {
      throw serviceError('ec2', 'InvalidLaunchTemplateName.NotFoundException', 'At least one of the launch templates specified in the request does not exist.', 'client', 400)
    }
    return { LaunchTemplates: found.map((lt) => ({ LaunchTemplateId: lt.id, LaunchTemplateName: lt.name, DefaultVersionNumber: lt.defaultVersion, LatestVersionNumber: lt.versions.length })) }
  }))
  ec2.on(DeleteLaunchTemplateCommand).callsFake(handle('DeleteLaunchTemplate', (input: DeleteLaunchTemplateCommandInput, region) => {
    const lt = liveTemplate(region, (x) => x.id === input.LaunchTemplateId || x.name === input.LaunchTemplateName)
    if (!lt) {
      throw serviceError('ec2', 'InvalidLaunchTemplateId.NotFound', `The specified launch template, with template ID ${input.LaunchTemplateId}, does not exist.`, 'client', 400)
    }
    lt.deleted = true
    return { LaunchTemplate: { LaunchTemplateId: lt.id, LaunchTemplateName: lt.name } }
  }))

  // Auto Scaling: groups and their instances.
  asg.on(CreateAutoScalingGroupCommand).callsFake(handle('CreateAutoScalingGroup', (input: CreateAutoScalingGroupCommandInput, region) => {
    const name = input.AutoScalingGroupName!
    if (liveGroup(region, name)) {
      throw new AlreadyExistsFault({ message: `AutoScalingGroup by this name already exists - A group with the name ${name} already exists`, $metadata: meta(400) })
    }
    const ltId = input.LaunchTemplate?.LaunchTemplateId
    if (!ltId || !liveTemplate(region, (lt) => lt.id === ltId)) {
      throw serviceError('autoscaling', 'ValidationError', `You must use a valid fully-formed launch template. The specified launch template ${ltId} does not exist.`, 'client', 400)
    }
    if ((input.MinSize ?? 0) > (input.MaxSize ?? 0)) throw permanentError('autoscaling', 'MinSize must not be greater than MaxSize')
    addGroup(region, name, {
      launchTemplateId: ltId, launchTemplateVersion: input.LaunchTemplate?.Version ?? '$Default', minSize: input.MinSize!, maxSize: input.MaxSize!, desired: input.DesiredCapacity ?? input.MinSize!
    }, input)
    return {}
  }))
  asg.on(DescribeAutoScalingGroupsCommand).callsFake(handle('DescribeAutoScalingGroups', (input: DescribeAutoScalingGroupsCommandInput, region) => {
    const found = groups.filter((g) => !g.deleted && g.region === region && (input.AutoScalingGroupNames ?? [g.name]).includes(g.name))
    return {
      AutoScalingGroups: found.map((g) => ({
        AutoScalingGroupName: g.name,
        AutoScalingGroupARN: g.arn,
        LaunchTemplate: { LaunchTemplateId: g.launchTemplateId, Version: g.launchTemplateVersion },
        MinSize: g.minSize,
        MaxSize: g.maxSize,
        DesiredCapacity: g.desired,
        DefaultCooldown: 300,
        AvailabilityZones: [`${region}a`],
        HealthCheckType: 'EC2',
        CreatedTime: new Date(),
        NewInstancesProtectedFromScaleIn: g.newInstancesProtected,
        Instances: g.instances.map((i) => ({
          InstanceId: i.instanceId,
          AvailabilityZone: `${region}a`,
          LifecycleState: i.lifecycle,
          HealthStatus: 'Healthy',
          ProtectedFromScaleIn: i.protectedFromScaleIn
        }))
      }))
    }
  }))
  asg.on(UpdateAutoScalingGroupCommand).callsFake(handle('UpdateAutoScalingGroup', (input: UpdateAutoScalingGroupCommandInput, region) => {
    const group = liveGroup(region, input.AutoScalingGroupName)
    if (!group) throw groupNotFound(input.AutoScalingGroupName)
    const min = input.MinSize ?? group.minSize
    const max = input.MaxSize ?? group.maxSize
    if (min > max) throw permanentError('autoscaling', `Desired capacity:${group.desired} must be between the specified min size:${min} and max size:${max}`)
    const desired = input.DesiredCapacity ?? Math.min(Math.max(group.desired, min), max)
    if (desired < min || desired > max) throw permanentError('autoscaling', `Desired capacity:${desired} must be between the specified min size:${min} and max size:${max}`)
    Object.assign(group, { minSize: min, maxSize: max, desired })
    if (input.NewInstancesProtectedFromScaleIn !== undefined) group.newInstancesProtected = input.NewInstancesProtectedFromScaleIn
    if (input.LaunchTemplate) {
      versionOf(templateById(region, input.LaunchTemplate.LaunchTemplateId), input.LaunchTemplate.Version)
      Object.assign(group, { launchTemplateId: input.LaunchTemplate.LaunchTemplateId, launchTemplateVersion: input.LaunchTemplate.Version ?? '$Default' })
    }
    settle(group)
    return {}
  }))
  asg.on(SetInstanceProtectionCommand).callsFake(handle('SetInstanceProtection', (input: SetInstanceProtectionCommandInput, region) => {
    const group = liveGroup(region, input.AutoScalingGroupName)
    if (!group) throw groupNotFound(input.AutoScalingGroupName)
    if ((input.InstanceIds?.length ?? 0) > 50) throw serviceError('autoscaling', 'LimitExceeded', 'You can specify up to 50 instances.', 'client', 400)
    for (const i of group.instances) if (input.InstanceIds?.includes(i.instanceId)) i.protectedFromScaleIn = input.ProtectedFromScaleIn ?? false
    // AWS brings the group to its desired capacity again: unprotected extras now go.
    settle(group)
    return {}
  }))
  asg.on(StartInstanceRefreshCommand).callsFake(handle('StartInstanceRefresh', (input: StartInstanceRefreshCommandInput, region) => {
    const group = liveGroup(region, input.AutoScalingGroupName)
    if (!group) throw groupNotFound(input.AutoScalingGroupName)
    if (refreshes.some((r) => r.group === group.name && (r.status === 'Pending' || r.status === 'InProgress'))) {
      throw new InstanceRefreshInProgressFault({ message: 'An Instance Refresh is already in progress and blocks the execution of this Instance Refresh.', $metadata: meta(400) })
    }
    const wanted = input.DesiredConfiguration?.LaunchTemplate
    if (wanted) versionOf(templateById(region, wanted.LaunchTemplateId), wanted.Version)
    if (input.Preferences?.AutoRollback && (!wanted || /^\$/.test(wanted.Version ?? '$Default') || /^\$/.test(group.launchTemplateVersion))) {
      throw permanentError('autoscaling', 'AutoRollback is not supported without a desired configuration or with the $Latest or $Default version.')
    }
    const refresh: ModelRefresh = { id: `refresh-${next().toString(16).padStart(8, '0')}`, group: group.name, input, status: 'Pending', looks: 0 }
    refreshes.push(refresh)
    return { InstanceRefreshId: refresh.id }
  }))
  asg.on(DescribeInstanceRefreshesCommand).callsFake(handle('DescribeInstanceRefreshes', (input: DescribeInstanceRefreshesCommandInput, region) => {
    const group = liveGroup(region, input.AutoScalingGroupName)
    const found = refreshes.filter((r) => r.group === input.AutoScalingGroupName && (!input.InstanceRefreshIds || input.InstanceRefreshIds.includes(r.id))).reverse()
    for (const r of found) {
      if (r.status !== 'Pending' && r.status !== 'InProgress') continue
      // The first look sees it in progress, the next its end.
      if (r.looks++ === 0 || !group) {
        r.status = 'InProgress'
        continue
      }
      const prefs = r.input.Preferences ?? {}
      const protectedHosts = group.instances.some((i) => i.protectedFromScaleIn)
      const failure = refreshFailures.get(group.name) ??
        (protectedHosts && (prefs.ScaleInProtectedInstances ?? 'Wait') === 'Wait' ? 'Timed out waiting for instances protected from scale in to be unprotected.' : undefined)
      if (failure) {
        refreshFailures.delete(group.name)
        r.status = prefs.AutoRollback ? 'RollbackSuccessful' : 'Failed'
        r.reason = failure
        continue
      }
      const wanted = r.input.DesiredConfiguration?.LaunchTemplate
      if (wanted) Object.assign(group, { launchTemplateId: wanted.LaunchTemplateId, launchTemplateVersion: wanted.Version ?? '$Default' })
      group.instances = group.instances.map(() => newInstance(group))
      r.status = 'Successful'
    }
    return {
      InstanceRefreshes: found.slice(0, input.MaxRecords ?? 50).map((r) => ({
        InstanceRefreshId: r.id, AutoScalingGroupName: r.group, Status: r.status, StatusReason: r.reason, PercentageComplete: r.status === 'Successful' ? 100 : r.status === 'InProgress' ? 50 : 0
      }))
    }
  }))
  asg.on(DeleteAutoScalingGroupCommand).callsFake(handle('DeleteAutoScalingGroup', (input: DeleteAutoScalingGroupCommandInput, region) => {
    const group = liveGroup(region, input.AutoScalingGroupName)
    if (!group) throw groupNotFound(input.AutoScalingGroupName)
    if (group.instances.length > 0 && !input.ForceDelete) {
      throw new ResourceInUseFault({ message: 'You cannot delete an AutoScalingGroup while there are instances or pending Spot instance request(s) still in the group.', $metadata: meta(400) })
    }
    group.instances = []
    group.deleted = true
    return {}
  }))

  // ECS: capacity providers, clusters, their container instances and tasks.
  ecs.on(CreateCapacityProviderCommand).callsFake(handle('CreateCapacityProvider', (input: CreateCapacityProviderCommandInput, region) => {
    const name = input.name!
    if (liveProvider(region, name)) {
      throw new ClientException({ message: 'The specified capacity provider already exists. To change the configuration of an existing capacity provider, update the capacity provider.', $metadata: meta(400) })
    }
    const groupArn = input.autoScalingGroupProvider?.autoScalingGroupArn
    if (!groups.some((g) => !g.deleted && g.arn === groupArn)) {
      throw new ClientException({ message: `The specified Auto Scaling group ARN ${groupArn} is not valid.`, $metadata: meta(400) })
    }
    const cp: ModelCapacityProvider = { name, arn: `arn:aws:ecs:${region}:${account}:capacity-provider/${name}`, region, groupArn: groupArn!, input, deleted: false }
    capacityProviders.push(cp)
    return { capacityProvider: { capacityProviderArn: cp.arn, name, status: 'ACTIVE', autoScalingGroupProvider: input.autoScalingGroupProvider } }
  }))
  ecs.on(DeleteCapacityProviderCommand).callsFake(handle('DeleteCapacityProvider', (input: DeleteCapacityProviderCommandInput, region) => {
    const cp = liveProvider(region, input.capacityProvider)
    if (!cp) throw new ClientException({ message: 'The specified capacity provider does not exist. Specify a valid name or ARN and try again.', $metadata: meta(400) })
    if (clusters.some((c) => !c.deleted && c.region === region && c.capacityProviders.includes(cp.name))) {
      throw new ResourceInUseException({ message: 'The specified capacity provider is in use and cannot be removed.', $metadata: meta(400) })
    }
    cp.deleted = true
    return { capacityProvider: { capacityProviderArn: cp.arn, name: cp.name, status: 'INACTIVE', updateStatus: 'DELETE_IN_PROGRESS' } }
  }))
  ecs.on(CreateClusterCommand).callsFake(handle('CreateCluster', (input: CreateClusterCommandInput, region) => {
    const name = input.clusterName ?? 'default'
    for (const cp of input.capacityProviders ?? []) {
      if (!liveProvider(region, cp)) throw new InvalidParameterException({ message: `The specified capacity provider '${cp}' is not in an ACTIVE state.`, $metadata: meta(400) })
    }
    // CreateCluster is idempotent in ECS: the cluster of that name is answered.
    let cluster = liveCluster(region, name)
    if (!cluster) {
      cluster = { name, arn: `arn:aws:ecs:${region}:${account}:cluster/${name}`, region, capacityProviders: [...(input.capacityProviders ?? [])], input, deleted: false }
      clusters.push(cluster)
    }
    return { cluster: { clusterArn: cluster.arn, clusterName: name, status: 'ACTIVE', capacityProviders: cluster.capacityProviders } }
  }))
  ecs.on(DeleteClusterCommand).callsFake(handle('DeleteCluster', (input: DeleteClusterCommandInput, region) => {
    const cluster = liveCluster(region, input.cluster)
    if (!cluster) throw clusterNotFound()
    if (hostsOf(cluster).length > 0) throw new ClusterContainsContainerInstancesException({ message: 'The Cluster cannot be deleted while Container Instances are active or draining.', $metadata: meta(400) })
    if (runningTasksOf(cluster).length > 0) throw new ClusterContainsTasksException({ message: 'The Cluster cannot be deleted while Tasks are active.', $metadata: meta(400) })
    cluster.deleted = true
    return { cluster: { clusterArn: cluster.arn, clusterName: cluster.name, status: 'INACTIVE' } }
  }))
  ecs.on(DescribeClustersCommand).callsFake(handle('DescribeClusters', (input: DescribeClustersCommandInput, region) => {
    const found = []
    const failures = []
    for (const ref of input.clusters ?? ['default']) {
      const cluster = liveCluster(region, ref)
      if (!cluster) {
        failures.push({ arn: `arn:aws:ecs:${region}:${account}:cluster/${clusterName(ref)}`, reason: 'MISSING' })
        continue
      }
      found.push({
        clusterArn: cluster.arn,
        clusterName: cluster.name,
        status: 'ACTIVE',
        registeredContainerInstancesCount: hostsOf(cluster).length,
        runningTasksCount: runningTasksOf(cluster).length,
        pendingTasksCount: 0,
        activeServicesCount: 0,
        capacityProviders: cluster.capacityProviders,
        defaultCapacityProviderStrategy: cluster.input.defaultCapacityProviderStrategy
      })
    }
    return { clusters: found, failures }
  }))
  ecs.on(ListContainerInstancesCommand).callsFake(handle('ListContainerInstances', (input: ListContainerInstancesCommandInput, region) => {
    const cluster = liveCluster(region, input.cluster)
    if (!cluster) throw clusterNotFound()
    return { containerInstanceArns: hostsOf(cluster).slice(0, input.maxResults ?? 100).map((i) => i.containerInstanceArn) }
  }))
  ecs.on(DescribeContainerInstancesCommand).callsFake(handle('DescribeContainerInstances', (input: DescribeContainerInstancesCommandInput, region) => {
    const cluster = liveCluster(region, input.cluster)
    if (!cluster) throw clusterNotFound()
    const hosts = hostsOf(cluster)
    const found = []
    const failures = []
    for (const arn of input.containerInstances ?? []) {
      const host = hosts.find((i) => i.containerInstanceArn === arn)
      if (!host) {
        failures.push({ arn, reason: 'MISSING' })
        continue
      }
      const running = runningTasksOf(cluster).length
      found.push({
        containerInstanceArn: host.containerInstanceArn,
        ec2InstanceId: host.instanceId,
        status: host.lifecycle === 'InService' ? 'ACTIVE' : 'DRAINING',
        agentConnected: true,
        runningTasksCount: running,
        remainingResources: [
          { name: 'CPU', type: 'INTEGER', integerValue: hostResources.cpu },
          { name: 'MEMORY', type: 'INTEGER', integerValue: hostResources.memoryMb }
        ]
      })
    }
    return { containerInstances: found, failures }
  }))
  ecs.on(StopTaskCommand).callsFake(handle('StopTask', (input: StopTaskCommandInput, region) => {
    const cluster = liveCluster(region, input.cluster)
    if (!cluster) throw clusterNotFound()
    const task = tasks.find((t) => t.taskArn === input.task && t.cluster === cluster.name && t.region === region)
    if (!task) throw new InvalidParameterException({ message: 'The referenced task was not found.', $metadata: meta(400) })
    if (task.status !== 'STOPPED') {
      task.status = 'STOPPED'
      task.stoppedReason = input.reason ?? 'Task stopped by user'
    }
    return { task: { taskArn: task.taskArn, lastStatus: task.status, desiredStatus: 'STOPPED', stoppedReason: task.stoppedReason } }
  }))

  return {
    /** Every call the app made, in order, failed ones included. */
    log,
    /** Every resource ever made, deleted ones included (`deleted: true`). */
    launchTemplates,
    groups,
    capacityProviders,
    clusters,
    tasks,
    refreshes,
    /** How many times the app sent this command (failed calls included). */
    calls (command: FleetCommandName) {
      return log.filter((c) => c.command === command).length
    },
    /** The inputs of every call of this command, in order (failed calls included). */
    received<T = Record<string, any>> (command: FleetCommandName): T[] {
      return log.filter((c) => c.command === command).map((c) => c.input as T)
    },
    /** The commands that went through, in order (optionally only those named). */
    succeeded (...only: FleetCommandName[]): FleetCommandName[] {
      return log.filter((c) => c.ok && (only.length === 0 || only.includes(c.command))).map((c) => c.command)
    },
    /** The names of what exists now (in one region, or all). */
    exists (region?: string) {
      const live = <T extends { deleted: boolean, region: string, name: string }>(list: T[]) =>
        list.filter((x) => !x.deleted && (region === undefined || x.region === region)).map((x) => x.name)
      return { launchTemplates: live(launchTemplates), groups: live(groups), capacityProviders: live(capacityProviders), clusters: live(clusters) }
    },
    /** The live group of that name (any region). */
    group (name: string): ModelGroup | undefined {
      return groups.find((g) => !g.deleted && g.name === name)
    },
    /** The next `times` calls of the command throw the SDK's throttling error. */
    throttle (command: FleetCommandName, times = 1) {
      queueFaults(command, times, () => throttlingError(commands[command]))
    },
    /** The next `times` calls of the command throw a permanent client error (or the one `make` builds). */
    failPermanently (command: FleetCommandName, times = 1, make?: () => Error) {
      queueFaults(command, times, make ?? (() => permanentError(commands[command])))
    },
    /** The next `times` calls of the command throw what `make` builds (e.g. `connectionReset`). */
    failWith (command: FleetCommandName, times: number, make: () => Error) {
      queueFaults(command, times, make)
    },
    /** The next `times` calls of the command are done, then their answer is lost (a dropped connection). */
    loseAnswer (command: FleetCommandName, times = 1) {
      lostAnswers.set(command, (lostAnswers.get(command) ?? 0) + times)
    },
    /** Faults still queued (0 once every injected fault was met). */
    pendingFaults () {
      return [...faults.values()].reduce((n, list) => n + list.length, 0)
    },
    /** From now on, instances scaled in go at once (`instant`) or stay Terminating until `terminateInstances` (`hold`). */
    setDrain (mode: 'instant' | 'hold') {
      drain = mode
    },
    /** The Terminating instances of a group (or of every group) are gone. */
    terminateInstances (groupName?: string) {
      for (const g of groups) if (groupName === undefined || g.name === groupName) g.instances = g.instances.filter((i) => i.lifecycle === 'InService')
    },
    /** What each host reports as remaining CPU units and memory. */
    setHostResources (fields: { cpu: number, memoryMb: number }) {
      Object.assign(hostResources, fields)
    },
    /** The next instance refresh of the group fails (RollbackSuccessful with AutoRollback), with this reason. */
    failNextRefresh (groupName: string, reason = 'An instance failed to launch.') {
      refreshFailures.set(groupName, reason)
    },
    /** The region's default VPC (and its default subnets) was deleted. */
    deleteDefaultVpc (region: string) {
      noDefaultVpc.add(region)
    },
    /** A launch template that exists already (made by a worker that died before recording it). */
    addLaunchTemplate (region: string, name: string) {
      return addLaunchTemplate(region, name, null)
    },
    /** A group that exists already (made by a worker that died, or by hand). */
    addGroup (region: string, name: string, fields: { launchTemplateId?: string, launchTemplateVersion?: string, minSize: number, maxSize: number, desired?: number }) {
      return addGroup(region, name, fields, null)
    },
    /** A RUNNING task on a live ECS cluster (a container the app started there); its ARN goes in the container row. */
    addTask (region: string, cluster: string): ModelTask {
      if (!liveCluster(region, cluster)) throw new Error(`fleet-model: no live ECS cluster ${cluster} in ${region}`)
      const task: ModelTask = { taskArn: `arn:aws:ecs:${region}:${account}:task/${cluster}/${next().toString(16).padStart(32, '0')}`, cluster, region, status: 'RUNNING', stoppedReason: null }
      tasks.push(task)
      return task
    },
    restore () {
      ec2.restore()
      asg.restore()
      ecs.restore()
    }
  }
}

export type FleetModel = ReturnType<typeof fleetModel>
