/**
 * End-to-end completeness, independent of JetStream: every batch an origin node stamps carries a
 * number (1, 2, 3 …, over all its shards). A receiver tracks, per origin, the highest number up
 * to which it applied everything (`contiguous`), the numbers it applied beyond that (`above`,
 * persisted by the node so a restart does not forget them), and the highest number the origin
 * says JetStream acknowledged (its heartbeat). A number that was already due `gapMs` ago — known
 * from a heartbeat, or below a number applied that long ago — and is still missing is one
 * JetStream lost (nats-server 2.9 can lose acknowledged messages when a quorum of replicas is
 * SIGKILLed at once) or holds in a stuck stream; the node then asks the origin for it directly
 * (repair.ts), which answers from its sent log. Numbers newer than `gapMs` are never asked for:
 * they are normally just in flight.
 *
 * Pure logic; the node persists `contiguous` and `above` in the apply transaction.
 */
interface OriginState {
  contiguous: number;
  readonly above: Set<number>;
  maxAbove: number;
  known: number;
  /** (time, highest number due then): one entry per snapshot, oldest first, bounded. */
  readonly targets: { atMs: number; target: number }[];
}

export interface GapRequest {
  readonly origin: string;
  readonly missing: readonly number[];
}

export interface NoteResult {
  /** New contiguous value when it moved (numbers up to it can be forgotten from `above`). */
  readonly contiguous: number | null;
  /** The number was applied out of order and is now in `above`. */
  readonly above: boolean;
}

const targetsMax = 64;

export class GapTracker {
  private readonly origins = new Map<string, OriginState>();
  /** While a transaction is open: each origin's state before it (null = unknown before), for rollback. */
  private journal: Map<string, OriginState | null> | null = null;

  constructor(initial: ReadonlyMap<string, { contiguous: number; above: readonly number[] }>, private readonly now: () => number = Date.now) {
    for (const [o, c] of initial) {
      const st = this.fresh(c.contiguous);
      for (const n of c.above) {
        if (n <= st.contiguous) continue;
        st.above.add(n);
        if (n > st.maxAbove) st.maxAbove = n;
      }
      while (st.above.delete(st.contiguous + 1)) st.contiguous++;
      this.origins.set(o, st);
    }
  }

  private fresh(contiguous: number): OriginState {
    return { contiguous, above: new Set(), maxAbove: contiguous, known: contiguous, targets: [] };
  }

  /**
   * Notes taken until commit() or rollback() belong to one database transaction: rollback() puts
   * every origin back as it was (the transaction that persisted them did not commit).
   */
  begin(): void {
    this.journal = new Map();
  }

  commit(): void {
    this.journal = null;
  }

  rollback(): void {
    if (!this.journal) return;
    for (const [origin, st] of this.journal) {
      if (st) this.origins.set(origin, st);
      else this.origins.delete(origin);
    }
    this.journal = null;
  }

  private remember(origin: string): void {
    if (!this.journal || this.journal.has(origin)) return;
    const st = this.origins.get(origin);
    this.journal.set(origin, st ? { ...st, above: new Set(st.above), targets: st.targets.map((t) => ({ ...t })) } : null);
  }

  /** A batch from `origin` numbered `n` was applied. */
  noteApplied(origin: string, n: number): NoteResult {
    this.remember(origin);
    let st = this.origins.get(origin);
    if (!st) {
      // First batch seen from this origin: every number from 1 is due (one JetStream lost is
      // fetched by repair; a number its origin no longer has is reported as lost, not skipped).
      st = this.fresh(0);
      this.origins.set(origin, st);
    }
    if (n <= st.contiguous || st.above.has(n)) return { contiguous: null, above: false };
    if (n === st.contiguous + 1) {
      st.contiguous = n;
      while (st.above.delete(st.contiguous + 1)) st.contiguous++;
      return { contiguous: st.contiguous, above: false };
    }
    st.above.add(n);
    if (n > st.maxAbove) st.maxAbove = n;
    return { contiguous: null, above: true };
  }

  /** The origin's heartbeat: JetStream acknowledged every batch of it up to `upto`. */
  noteKnown(origin: string, upto: number): void {
    const st = this.origins.get(origin);
    if (!st) {
      // First heartbeat from this origin: its numbers up to `upto` are due here, not assumed applied.
      this.origins.set(origin, { ...this.fresh(0), known: upto });
      return;
    }
    if (upto > st.known) st.known = upto;
  }

  /**
   * Record where each origin stands now (call periodically), and return, per origin, up to `max`
   * numbers that were already due `gapMs` ago and are still missing.
   */
  due(gapMs: number, max: number): GapRequest[] {
    const now = this.now();
    const out: GapRequest[] = [];
    for (const [origin, st] of this.origins) {
      const target = Math.max(st.known, st.maxAbove);
      if (st.targets.length === 0 || st.targets[st.targets.length - 1]!.target !== target) {
        st.targets.push({ atMs: now, target });
        if (st.targets.length > targetsMax) st.targets.shift();
      }
      let dueTarget = -1;
      while (st.targets.length > 0 && now - st.targets[0]!.atMs >= gapMs) {
        dueTarget = st.targets[0]!.target;
        if (st.targets.length > 1 && now - st.targets[1]!.atMs >= gapMs) st.targets.shift();
        else break;
      }
      if (dueTarget <= st.contiguous) continue;
      const missing: number[] = [];
      for (let n = st.contiguous + 1; n <= dueTarget && missing.length < max; n++) if (!st.above.has(n)) missing.push(n);
      if (missing.length > 0) out.push({ origin, missing });
    }
    return out;
  }

  /** A snapshot restore brought in every batch of `origin` up to `contiguous` (never lowers it). */
  raise(origin: string, contiguous: number): void {
    this.remember(origin);
    const st = this.origins.get(origin) ?? this.fresh(0);
    this.origins.set(origin, st);
    if (contiguous <= st.contiguous) return;
    st.contiguous = contiguous;
    for (const n of st.above) if (n <= contiguous) st.above.delete(n);
    while (st.above.delete(st.contiguous + 1)) st.contiguous++;
    st.known = Math.max(st.known, st.contiguous);
    st.maxAbove = Math.max(st.maxAbove, st.contiguous);
  }

  /**
   * Origins with more than `aboveMax` numbers applied out of order (a hole that repair has not
   * closed while the origin kept sending): the lowest missing numbers, at most `max` per origin —
   * given up (giveUp) they let contiguous absorb what is above, so `__burrow_received_above` stays
   * bounded; the node restores from a snapshot for what they carried.
   */
  overflowing(aboveMax: number, max: number): GapRequest[] {
    const out: GapRequest[] = [];
    for (const [origin, st] of this.origins) {
      if (st.above.size <= aboveMax) continue;
      const sorted = [...st.above].sort((a, b) => a - b);
      const upto = sorted[st.above.size - aboveMax - 1]!;
      const missing: number[] = [];
      for (let n = st.contiguous + 1; n < upto && missing.length < max; n++) if (!st.above.has(n)) missing.push(n);
      if (missing.length > 0) out.push({ origin, missing });
    }
    return out;
  }

  /** Numbers the origin no longer has: settled so tracking goes on (the node reports them). */
  giveUp(origin: string, numbers: readonly number[]): NoteResult[] {
    return numbers.map((n) => this.noteApplied(origin, n));
  }

  snapshot(): { origin: string; contiguous: number; known: number; aheadApplied: number; behind: number }[] {
    return [...this.origins.entries()].map(([origin, st]) => ({
      origin, contiguous: st.contiguous, known: st.known, aheadApplied: st.above.size,
      behind: Math.max(0, Math.max(st.known, st.maxAbove) - st.contiguous - st.above.size),
    }));
  }
}
