import { assert } from '../util/assert.ts';
import type { Clock } from './clock.ts';

/**
 * Hybrid logical clock in one signed 64-bit integer: physical milliseconds in the high 47 bits,
 * a logical counter in the low 16. Timestamps from one node are strictly increasing (also across
 * restarts: the node seeds the clock from the highest timestamp it persisted). Ties between nodes
 * are broken by node id (see apply/lww.ts).
 */
export const hlcCounterBits = 16n;
const counterMask = (1n << hlcCounterBits) - 1n;

export function hlcPack(ms: number, counter: number): bigint {
  assert(Number.isInteger(ms) && ms >= 0 && ms < 2 ** 47, `hlc physical ms out of range: ${ms}`);
  assert(Number.isInteger(counter) && counter >= 0 && counter <= 0xffff, `hlc counter out of range: ${counter}`);
  return (BigInt(ms) << hlcCounterBits) | BigInt(counter);
}

export function hlcMs(ts: bigint): number {
  return Number(ts >> hlcCounterBits);
}

export function hlcCounter(ts: bigint): number {
  return Number(ts & counterMask);
}

export function hlcFormat(ts: bigint): string {
  return `${new Date(hlcMs(ts)).toISOString()}+${hlcCounter(ts)}`;
}

export type ReceiveResult = { ok: true } | { ok: false; aheadMs: number };

export class Hlc {
  private last = 0n;

  constructor(private readonly clock: Clock, private readonly skewMsMax: number) {
    assert(skewMsMax > 0, 'skewMsMax must be positive');
  }

  /** A new timestamp for a local change: strictly greater than every timestamp seen so far. */
  now(): bigint {
    const phys = BigInt(Math.max(0, Math.floor(this.clock.nowMs()))) << hlcCounterBits;
    this.last = phys > this.last ? phys : this.last + 1n;
    return this.last;
  }

  /**
   * Observe a remote timestamp. Returns {ok:false} (and leaves the clock alone) when the remote
   * physical time is more than skewMsMax ahead of ours: such an entry is held, not applied.
   */
  receive(remote: bigint): ReceiveResult {
    const aheadMs = hlcMs(remote) - this.clock.nowMs();
    if (aheadMs > this.skewMsMax) return { ok: false, aheadMs };
    if (remote > this.last) this.last = remote;
    return { ok: true };
  }

  /** Seed from a persisted timestamp (restart): later `now()` values exceed it. No skew check. */
  observe(ts: bigint): void {
    if (ts > this.last) this.last = ts;
  }

  peek(): bigint {
    return this.last;
  }
}
