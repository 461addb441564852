// Calls from us to the host agent on a container's host (start values now; cloud-storage mounts with the
// storage feature): one client, a timeout on every call, and the shared secret in a header.
export interface StartValues {
  containerId: string
  userId: string
  /** The host port of the container's 32262/tcp: how the agent finds the container. */
  hostPort: number
  dpi: number
}

export interface HostAgentClient {
  setStartValues (hostIp: string, values: StartValues): Promise<void>
  /** Mounts a user's cloud storage in the container (a fresh access token; never logged). */
  mountStorage (hostIp: string, mount: { containerId: string, hostPort: number, provider: string, accessToken: string }): Promise<void>
}

export class AgentCallFailed extends Error {
  override name = 'AgentCallFailed'
  constructor (message: string, readonly status: number | null) { super(message) }
  /** A 5xx, a timeout or a refused connection is worth retrying; a 4xx is not. */
  get $retryable () { return this.status === null || this.status >= 500 ? {} : undefined }
}

export function createHostAgentClient (options: { scheme: 'http' | 'https', port: number, secret: string, timeoutMs: number }): HostAgentClient {
  async function call (hostIp: string, path: string, body: unknown) {
    const host = hostIp.includes(':') ? `[${hostIp}]` : hostIp
    let res: Response
    try {
      res = await fetch(`${options.scheme}://${host}:${options.port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-fractal-agent-secret': options.secret },
        body: JSON.stringify(body),
        signal: AbortSignal.timeout(options.timeoutMs)
      })
    } catch (err) {
      const timedOut = (err as Error).name === 'TimeoutError'
      throw new AgentCallFailed(`host agent at ${hostIp}: ${timedOut ? `no answer within ${options.timeoutMs} ms` : (err as Error).message}`, null)
    }
    await res.arrayBuffer()
    if (!res.ok) throw new AgentCallFailed(`host agent at ${hostIp} answered ${res.status} to ${path}`, res.status)
  }
  return {
    setStartValues: (hostIp, values) => call(hostIp, '/set_container_start_values', {
      container_id: values.containerId, user_id: values.userId, host_port: values.hostPort, dpi: values.dpi
    }),
    mountStorage: (hostIp, mount) => call(hostIp, '/mount_cloud_storage', {
      container_id: mount.containerId, host_port: mount.hostPort, provider: mount.provider, access_token: mount.accessToken
    })
  }
}
