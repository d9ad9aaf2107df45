/**
 * End-to-end completeness, independent of JetStream: every batch an origin node stamps carries a
 * number (1, 2, 3 …, over all its shards). A receiver tracks, per origin, the highest number up
 * to which it applied everything (`contiguous`), the numbers it applied beyond that, and the
 * highest number the origin says JetStream acknowledged (its heartbeat). A number still missing
 * after `gapMs` without progress is one JetStream lost (nats-server 2.9 can lose acknowledged
 * messages when a quorum of replicas is SIGKILLed at once) or still holds in a stuck stream; the
 * node then asks the origin for it directly (node.ts), which answers from its sent log.
 *
 * Pure logic; the node persists `contiguous` in the apply transaction.
 */
interface OriginState {
  contiguous: number;
  readonly above: Set<number>;
  maxAbove: number;
  known: number;
  /** When the origin was last seen making progress (or first found behind). */
  progressAtMs: number;
  lastRequestMs: number;
}

export interface GapRequest {
  readonly origin: string;
  readonly missing: readonly number[];
}

export class GapTracker {
  private readonly origins = new Map<string, OriginState>();

  constructor(initial: ReadonlyMap<string, number>, private readonly now: () => number = Date.now) {
    for (const [o, c] of initial) this.origins.set(o, this.fresh(c));
  }

  private fresh(contiguous: number): OriginState {
    return { contiguous, above: new Set(), maxAbove: contiguous, known: contiguous, progressAtMs: this.now(), lastRequestMs: 0 };
  }

  /** A batch from `origin` numbered `n` was applied; returns the new contiguous value when it moved. */
  noteApplied(origin: string, n: number): number | null {
    let st = this.origins.get(origin);
    if (!st) {
      // First batch ever seen from this origin: what came before predates this replica.
      st = this.fresh(n - 1);
      this.origins.set(origin, st);
    }
    if (n <= st.contiguous || st.above.has(n)) return null;
    st.above.add(n);
    if (n > st.maxAbove) st.maxAbove = n;
    const before = st.contiguous;
    while (st.above.delete(st.contiguous + 1)) st.contiguous++;
    if (st.contiguous === before) return null;
    st.progressAtMs = this.now();
    return st.contiguous;
  }

  /** The origin's heartbeat: JetStream acknowledged every batch of it up to `upto`. */
  noteKnown(origin: string, upto: number): void {
    let st = this.origins.get(origin);
    if (!st) {
      st = this.fresh(upto);
      this.origins.set(origin, st);
      return;
    }
    if (upto > st.known) {
      if (st.known <= st.contiguous && st.maxAbove <= st.contiguous) st.progressAtMs = this.now(); // newly behind: start the clock
      st.known = upto;
    }
  }

  /** Origins with numbers missing for `gapMs` without progress (at most `max` numbers each), at most one request per `gapMs`. */
  due(gapMs: number, max: number): GapRequest[] {
    const now = this.now();
    const out: GapRequest[] = [];
    for (const [origin, st] of this.origins) {
      const target = Math.max(st.known, st.maxAbove);
      if (target <= st.contiguous) continue;
      if (now - st.progressAtMs < gapMs || now - st.lastRequestMs < gapMs) continue;
      const missing: number[] = [];
      for (let n = st.contiguous + 1; n <= target && missing.length < max; n++) if (!st.above.has(n)) missing.push(n);
      if (missing.length === 0) continue;
      st.lastRequestMs = now;
      out.push({ origin, missing });
    }
    return out;
  }

  /** Numbers the origin no longer has: counted as settled so tracking goes on (reported by the node). */
  giveUp(origin: string, numbers: readonly number[]): number | null {
    let moved: number | null = null;
    for (const n of numbers) moved = this.noteApplied(origin, n) ?? moved;
    return moved;
  }

  snapshot(): { origin: string; contiguous: number; known: number; aheadApplied: number; behind: number }[] {
    return [...this.origins.entries()].map(([origin, st]) => ({
      origin, contiguous: st.contiguous, known: st.known, aheadApplied: st.above.size,
      behind: Math.max(0, Math.max(st.known, st.maxAbove) - st.contiguous - st.above.size),
    }));
  }
}
