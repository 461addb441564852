import type { Clock } from '../../services/clock.js'

/** A clock that runs with real time and can be moved ahead (past a token's or a window's lifetime). */
export class TestClock implements Clock {
  private offset = 0
  now (): number { return Date.now() + this.offset }
  /** Moves the clock `ms` ahead. */
  advance (ms: number): void { this.offset += ms }
}
