// Where containers run. `aws` drives ECS (RunTask/DescribeTasks); `simulated`, the embedded default, makes
// each container ready after a short delay with a fake address, so everything works without AWS.
export interface TaskSpec {
  containerId: string
  region: string
  cluster: string
  taskDefinition: string
  /** Handed to the container in its environment; never shown to users. */
  environment: Record<string, string>
}

export interface RunningTask { taskArn: string, hostIp: string, ports: { tcp32262: number, udp32263: number, tcp32273: number } }

export interface CloudProvider {
  readonly kind: 'simulated' | 'aws'
  /** Starts the task, or finds the one already started for this container (retries never start two). */
  startTask (spec: TaskSpec): Promise<RunningTask>
  stopTask (region: string, cluster: string, taskArn: string): Promise<void>
}

export function createSimulatedProvider (options: { startDelayMs: number }): CloudProvider {
  const started = new Map<string, RunningTask>()
  let next = 0
  return {
    kind: 'simulated',
    async startTask (spec) {
      const existing = started.get(spec.containerId)
      if (existing) return existing
      await new Promise((resolve) => setTimeout(resolve, options.startDelayMs))
      const n = next++
      const task: RunningTask = {
        taskArn: `arn:aws:ecs:${spec.region}:000000000000:task/${spec.cluster}/${spec.containerId.replace(/-/g, '')}`,
        hostIp: `203.0.113.${(n % 250) + 1}`,
        ports: { tcp32262: 40000 + (n % 1000) * 3, udp32263: 40001 + (n % 1000) * 3, tcp32273: 40002 + (n % 1000) * 3 }
      }
      started.set(spec.containerId, task)
      return task
    },
    async stopTask () {}
  }
}
