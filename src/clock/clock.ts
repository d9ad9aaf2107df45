/** Physical time source, injected so tests and chaos runs can drive drift, steps and skew. */
export interface Clock {
  nowMs(): number;
}

/** Wall clock, optionally offset (chaos runs skew a node with BURROW_CLOCK_OFFSET_MS). */
export class SystemClock implements Clock {
  constructor(private readonly offsetMs = 0) {}
  nowMs(): number {
    return Date.now() + this.offsetMs;
  }
}

/** A clock that only moves when told to (unit tests). */
export class SimulatedClock implements Clock {
  constructor(private ms: number) {}
  nowMs(): number {
    return this.ms;
  }
  set(ms: number): void {
    this.ms = ms;
  }
  advance(ms: number): void {
    this.ms += ms;
  }
}
