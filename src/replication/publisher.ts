import type { JetStreamClient } from '@nats-io/jetstream';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';
import { assert } from '../util/assert.ts';
import { sabotageCorrupts, sabotageDrops } from '../util/sabotage.ts';

/** A stamped batch waiting in the node's outbox (one message). */
export interface OutboxBatch {
  readonly id: number;
  readonly shard: number;
  readonly msgId: string;
  readonly changes: number;
  readonly payload: Uint8Array;
}

/** What the publisher needs from the outbox (implemented over SQLite by the node). */
export interface OutboxSource {
  /** Oldest batches of `shard`, skipping ids in `exclude` (already in flight), at most `limit`. */
  pending(shard: number, limit: number, exclude: ReadonlySet<number>): OutboxBatch[];
  /** Delete batches whose publish was acknowledged. */
  remove(ids: readonly number[]): void;
}

export interface PublisherLimits {
  readonly shards: number;
  /** Publishes awaiting their ack, over all shards. */
  readonly inFlightMax: number;
  /** Publishes awaiting their ack per shard: a shard whose leader is being re-elected cannot take every slot. */
  readonly inFlightPerShardMax: number;
  readonly timeoutMs: number;
  readonly retryDelayMsMin: number;
  readonly retryDelayMsMax: number;
  /**
   * A shard whose publishes have failed this long sends its batches through another shard's
   * stream (0: never). LWW apply does not depend on which stream carries a change, so a stream
   * JetStream cannot recover for minutes does not hold the shard's changes back. The home shard
   * is probed with one publish every `detourProbeMs`; once it succeeds, batches go home again.
   */
  readonly detourAfterMs?: number;
  readonly detourProbeMs?: number;
  /** Re-address an encoded batch to another shard (its payload names its shard). */
  readonly reshard?: (payload: Uint8Array, shard: number) => Uint8Array;
  /** Told of each acknowledged batch (metrics). */
  readonly onAcked?: (b: OutboxBatch) => void;
  /** Signs a payload as it goes out ([security] sign; identity when off). */
  readonly seal?: (payload: Uint8Array) => Uint8Array;
}

export interface PublisherStats {
  published: number;
  changesPublished: number;
  duplicates: number;
  retries: number;
  /** Batches published through another shard's stream because their own was stuck. */
  detoured: number;
  /** Times a stream leader election woke waiting publishes. */
  leaderWakeups: number;
  inFlight: number;
  lastError: string | null;
  lastErrorAtMs: number | null;
}

/**
 * At-least-once, deduplicated publishing from the outbox: a bounded window of publishes in
 * flight; each batch carries its persisted msgID, so a retry (timeout, no responders during a
 * leader election, a crash and restart) is deduplicated by JetStream. A batch leaves the outbox
 * only after its ack; on any error it stays and is retried with backoff — never dropped.
 */
export class Publisher {
  readonly stats: PublisherStats = { published: 0, changesPublished: 0, duplicates: 0, retries: 0, detoured: 0, leaderWakeups: 0, inFlight: 0, lastError: null, lastErrorAtMs: null };
  private readonly inFlight = new Set<number>();
  private readonly inFlightShard = new Map<number, number>();
  private readonly perShard: number[] = [];
  /** Per shard: the outbox may hold batches not yet in flight (cleared when a read comes back short). */
  private readonly hasMore: boolean[];
  private nextShard = 0;
  /** Per shard: when its current streak of failed publishes began (absent: no failure since the last success). */
  private readonly failingSince = new Map<number, number>();
  private acked: number[] = [];
  private readonly lastProbeMs = new Map<number, number>();
  private running = false;
  private pumping = false;
  private flushScheduled = false;
  private removeFailures = 0;
  private idleWaiters: (() => void)[] = [];
  /** Per shard: sends waiting on a publish or a backoff, woken when the stream elects a leader. */
  private readonly wakers = new Map<number, Set<() => void>>();

  constructor(
    private readonly js: JetStreamClient,
    private readonly source: OutboxSource,
    private readonly subjectOf: (shard: number) => string,
    private readonly limits: PublisherLimits,
    private readonly log: Logger,
  ) {
    this.hasMore = Array.from({ length: limits.shards }, () => true);
  }

  start(): void {
    this.running = true;
    this.kick();
  }

  /**
   * New batches may be in the outbox: of `shards` (the stamper says which it wrote), or of any
   * shard when not given. Shards not named and last read to the end are not read again.
   */
  kick(shards?: Iterable<number>): void {
    if (shards === undefined) this.hasMore.fill(true);
    else for (const s of shards) if (s >= 0 && s < this.hasMore.length) this.hasMore[s] = true;
    this.pump();
  }

  private pump(): void {
    if (!this.running || this.pumping) return;
    this.pumping = true;
    try {
      // Round-robin over shards from a rotating start, each up to its own cap, all within the total.
      const n = this.limits.shards;
      const start = this.nextShard;
      this.nextShard = (this.nextShard + 1) % n;
      for (let i = 0; i < n && this.inFlight.size < this.limits.inFlightMax; i++) {
        const shard = (start + i) % n;
        if (!this.hasMore[shard]) continue;
        const busy = this.perShard[shard] ?? 0;
        const room = Math.min(this.shardCap(shard) - busy, this.limits.inFlightMax - this.inFlight.size);
        if (room <= 0) continue;
        const batches = this.source.pending(shard, room, this.inFlight);
        if (batches.length < room) this.hasMore[shard] = false;
        for (const b of batches) {
          assert(!this.inFlight.has(b.id), 'outbox returned a batch already in flight');
          assert(b.shard === shard, 'outbox returned a batch of another shard');
          this.inFlight.add(b.id);
          this.inFlightShard.set(b.id, shard);
          this.perShard[shard] = (this.perShard[shard] ?? 0) + 1;
          void this.send(b, 0);
        }
      }
    } finally {
      this.pumping = false;
      this.stats.inFlight = this.inFlight.size;
    }
    this.notifyIdle();
  }

  /**
   * Publishes a shard may have in flight: the per-shard cap, but 1 while its publishes fail (and
   * are not yet detoured) — a retrying batch holds its slot, so several dead stream leaders would
   * otherwise take every slot of the window and stall the healthy shards too.
   */
  private shardCap(shard: number): number {
    const since = this.failingSince.get(shard);
    if (since === undefined) return this.limits.inFlightPerShardMax;
    const after = this.limits.detourAfterMs ?? 0;
    const detouring = after > 0 && this.limits.reshard !== undefined && Date.now() - since >= after;
    return detouring ? this.limits.inFlightPerShardMax : 1;
  }

  /**
   * JetStream elected a new leader for `shard`'s stream (an advisory): publishes waiting on the
   * old one (its reply will never come) or sleeping in backoff are retried now, with their msgID.
   */
  leaderElected(shard: number): void {
    const w = this.wakers.get(shard);
    if (!w) return;
    this.wakers.delete(shard);
    this.stats.leaderWakeups++;
    for (const f of w) f();
  }

  /** Resolves 'woken' when leaderElected(shard) is called first. */
  private wakeable<T>(shard: number, p: Promise<T>): Promise<T | 'woken'> {
    return new Promise<T | 'woken'>((resolve, reject) => {
      let set = this.wakers.get(shard);
      if (!set) this.wakers.set(shard, (set = new Set()));
      const wake = () => resolve('woken');
      set.add(wake);
      p.then(resolve, reject).finally(() => this.wakers.get(shard)?.delete(wake));
    });
  }

  /** The shard whose stream carries `home`'s next publish: home, or a detour while home is stuck. */
  private target(home: number): number {
    const after = this.limits.detourAfterMs ?? 0;
    const since = this.failingSince.get(home);
    if (after <= 0 || !this.limits.reshard || since === undefined || Date.now() - since < after) return home;
    const now = Date.now();
    if (now - (this.lastProbeMs.get(home) ?? 0) >= (this.limits.detourProbeMs ?? 2000)) {
      this.lastProbeMs.set(home, now);
      return home;
    }
    for (let k = 1; k < this.limits.shards; k++) {
      const h = (home + k) % this.limits.shards;
      if (!this.failingSince.has(h)) return h;
    }
    return home;
  }

  private async send(b: OutboxBatch, attempt: number): Promise<void> {
    for (;;) {
      const to = this.target(b.shard);
      const startedMs = Date.now();
      try {
        const plain = to === b.shard ? b.payload : this.limits.reshard!(b.payload, to);
        const payload = this.limits.seal ? this.limits.seal(plain) : plain;
        const sent = sabotageDrops(b.msgId) ? Promise.resolve({ duplicate: false })
          : this.js.publish(this.subjectOf(to), sabotageCorrupts(b.msgId) ? Buffer.from('sabotage: not a batch') : payload, { msgID: b.msgId, timeout: this.limits.timeoutMs });
        sent.catch(() => {}); // when abandoned for a new leader, its timeout is of no interest
        const ack = await this.wakeable(to, sent);
        if (ack === 'woken') {
          attempt++;
          continue; // the stream has a new leader: publish again now (same msgID: deduplicated)
        }
        this.stats.published++;
        this.stats.changesPublished += b.changes;
        this.failingSince.delete(to);
        if (to !== b.shard) {
          this.stats.detoured++;
          if (this.stats.detoured === 1 || this.stats.detoured % 100 === 0) {
            this.log.warn('shard stream stuck; batch published through another shard', { shard: b.shard, via: to, detoured: this.stats.detoured });
          }
        }
        if (ack.duplicate) this.stats.duplicates++;
        if (attempt > 0) this.log.info('publish succeeded after retries', { shard: b.shard, via: to === b.shard ? undefined : to, msgId: b.msgId, attempts: attempt + 1 });
        this.acked.push(b.id);
        this.limits.onAcked?.(b);
        this.scheduleFlush();
        return;
      } catch (err) {
        attempt++;
        this.stats.retries++;
        // Failing since this attempt began (a timeout reports it only after timeoutMs).
        if (!this.failingSince.has(to)) this.failingSince.set(to, startedMs);
        this.stats.lastError = `${(err as Error).name ?? 'Error'}: ${errorMessage(err)}`;
        this.stats.lastErrorAtMs = Date.now();
        if (attempt === 1 || attempt % 20 === 0) {
          this.log.warn('publish failed; will retry with the same msgID', { shard: b.shard, via: to === b.shard ? undefined : to, msgId: b.msgId, attempt, error: this.stats.lastError });
        }
        if (!this.running) {
          this.release(b.id); // stays in the outbox; published after restart
          this.stats.inFlight = this.inFlight.size;
          this.notifyIdle();
          return;
        }
        const delay = Math.min(this.limits.retryDelayMsMax, this.limits.retryDelayMsMin * 2 ** Math.min(attempt - 1, 10));
        // A batch that can take a detour now does not wait out the backoff.
        if (this.target(b.shard) !== to && to === b.shard) continue;
        // Several batches of a failing shard retrying at once only hold slots: one keeps probing,
        // the others go back to the outbox (published again, in order, once the shard recovers).
        if ((this.perShard[b.shard] ?? 0) > this.shardCap(b.shard)) {
          this.release(b.id);
          this.hasMore[b.shard] = true;
          this.pump(); // the freed slot goes to a live shard
          return;
        }
        let timer: NodeJS.Timeout | undefined;
        await this.wakeable(to, new Promise<void>((r) => (timer = setTimeout(r, delay * (0.75 + Math.random() * 0.5)))));
        clearTimeout(timer);
      }
    }
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flushAcked();
    });
  }

  private flushAcked(): void {
    if (this.acked.length === 0) return;
    const ids = this.acked;
    this.acked = [];
    try {
      this.source.remove(ids);
    } catch (err) {
      // Busy database or disk trouble: keep them in flight (not republished) and retry the removal.
      this.removeFailures++;
      if (this.removeFailures === 1 || this.removeFailures % 50 === 0) {
        this.log.warn('could not remove published batches from the outbox; retrying', { batches: ids.length, error: errorMessage(err) });
      }
      this.acked.push(...ids);
      if (this.running) {
        setTimeout(() => this.flushAcked(), Math.min(1000, 25 * 2 ** Math.min(this.removeFailures, 6)));
      } else {
        for (const id of ids) this.release(id); // stopping: they stay in the outbox, republished (deduplicated) after restart
        this.acked = [];
      }
      return;
    }
    this.removeFailures = 0;
    for (const id of ids) this.release(id);
    this.stats.inFlight = this.inFlight.size;
    this.pump();
  }

  private release(id: number): void {
    if (!this.inFlight.delete(id)) return;
    const shard = this.inFlightShard.get(id);
    this.inFlightShard.delete(id);
    if (shard !== undefined) this.perShard[shard] = (this.perShard[shard] ?? 1) - 1;
  }

  /**
   * Shards whose publishes have failed continuously for at least `ms` and that still have batches
   * in flight. A shard whose last publish failed and that has had nothing to publish since keeps
   * its failure streak (its next batch probes it) but is not stuck: stepping its stream's leader
   * down would stall every node's reads of it for nothing (seen in the benchmark: a node that had
   * written under overload had 13 leaders stepped down 30 s later, while the cluster was idle).
   */
  stuckShards(ms: number): number[] {
    const now = Date.now();
    return [...this.failingSince.entries()].filter(([shard, since]) => now - since >= ms && (this.perShard[shard] ?? 0) > 0).map(([shard]) => shard);
  }

  inFlightCount(): number {
    return this.inFlight.size;
  }

  private notifyIdle(): void {
    if (this.inFlight.size > 0) return;
    const w = this.idleWaiters;
    this.idleWaiters = [];
    for (const f of w) f();
  }

  /** Resolve when nothing is in flight (or after timeoutMs). */
  async waitIdle(timeoutMs: number): Promise<boolean> {
    if (this.inFlight.size === 0) return true;
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.idleWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  stop(): void {
    this.running = false;
    this.flushAcked();
  }
}
