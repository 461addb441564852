/**
 * Where the app reads the time for credentials, grants and limits: the system's, or a test's that can be
 * moved past a lifetime without waiting for it.
 */
export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now (): number
}

export const systemClock: Clock = { now: () => Date.now() }
