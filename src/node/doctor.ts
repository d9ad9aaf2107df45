import type { Inbound } from '../replication/inbound.ts';
import type { NatsLink } from '../replication/nats-link.ts';
import { streamName } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

/**
 * Watches for shards JetStream left stuck and nudges them, bounded in rate.
 *
 * nats-server 2.9's Raft recovery after repeated hard kills (quorum loss) can leave a stream
 * refusing publishes, or not delivering what it holds, for minutes; a leader step-down (a new
 * election) unsticks it within seconds. The doctor never touches data: it only reads shards again
 * and asks for elections.
 *
 * - publish side: a shard whose publishes have failed for `stuckMs` → stream leader step-down;
 *   still failing after `escalateAfterChecks` × `stuckMs` → `escalate` (seed 202: the schema
 *   stream refused every publish for minutes after quorum kills while it still delivered).
 * - read side: a shard silent for `stuckMs` whose stream holds messages beyond this node's
 *   position → read it again with a new consumer (in the background), and if it is still stuck at
 *   the next check, a stream leader step-down; still stuck after `escalateAfterChecks` checks →
 *   `escalate`. A stream that does not answer at all (no leader) for two checks in a
 *   row → stream leader step-down; still no answer after `escalateAfterChecks` checks →
 *   `escalate` (the node restarts its own nats-server, rate-limited: a server whose view of the
 *   stream went stale after quorum kills re-syncs at start — chaos seed 606, nats-server 2.9.10).
 */
export interface DoctorLimits {
  readonly stuckMs: number;
  /** Least time between two nudges of the same shard (each kind). */
  readonly nudgeIntervalMs: number;
}

/** The publish side the doctor watches: shards whose publishes have failed for at least `ms`. */
export interface StuckPublishes {
  stuckShards(ms: number): number[];
}

export interface DoctorStats {
  streamStepDowns: number;
  rereads: number;
  shardChecks: number;
  stalledShards: number[];
}

export class ShardDoctor {
  readonly stats: DoctorStats = { streamStepDowns: 0, rereads: 0, shardChecks: 0, stalledShards: [] };
  private readonly lastStreamNudge = new Map<number, number>();
  private readonly lastCheck = new Map<number, number>();
  /** Consecutive checks that found the shard stalled (or its stream unreachable). */
  private readonly stalled = new Map<number, { checks: number; unreachable: number; received: number }>();
  private busy = false;
  /** Shards being read again (in the background: see reread). */
  private readonly rereading = new Set<number>();
  /** Called when a shard's stream has not answered for `escalateAfterChecks` checks in a row. */
  escalate: ((why: string) => Promise<void>) | null = null;
  escalateAfterChecks = 4;

  constructor(
    private readonly cluster: string,
    private readonly link: NatsLink,
    /** null: a reader without a publisher of its own to watch (the schema stream's). */
    private readonly publisher: StuckPublishes | null,
    private readonly inbound: Inbound,
    private readonly limits: DoctorLimits,
    private readonly log: Logger,
    /** The stream a shard of `inbound` reads (the schema reader's one "shard" is the schema stream). */
    private readonly streamOf: (shard: number) => string = (shard) => streamName(cluster, shard),
  ) {}

  async tick(): Promise<void> {
    if (this.busy || this.link.nc.isClosed()) return;
    this.busy = true;
    try {
      await this.publishSide();
      await this.readSide();
    } finally {
      this.busy = false;
    }
  }

  private async publishSide(): Promise<void> {
    for (const shard of this.publisher?.stuckShards(this.limits.stuckMs) ?? []) {
      await this.stepDownStream(shard, 'shard publishes failing for long');
    }
    const long = this.publisher?.stuckShards(this.limits.stuckMs * this.escalateAfterChecks) ?? [];
    if (long.length > 0 && this.escalate) {
      await this.escalate(`publishes to ${long.map((s) => this.streamOf(s)).join(', ')} have failed for ${Math.round(this.limits.stuckMs * this.escalateAfterChecks / 1000)} s`)
        .catch((e) => this.log.warn('escalation failed', { error: errorMessage(e) }));
    }
  }

  private async readSide(): Promise<void> {
    const now = Date.now();
    // A shard that received anything since it was found stalled is healthy again.
    for (const [shard, st] of this.stalled) if (this.inbound.receivedPerShard[shard]! > st.received) this.stalled.delete(shard);
    for (const shard of this.inbound.silentShards(this.limits.stuckMs)) {
      if (now - (this.lastCheck.get(shard) ?? 0) < this.limits.stuckMs) continue;
      this.lastCheck.set(shard, now);
      this.stats.shardChecks++;
      const stream = this.streamOf(shard);
      const st = this.stalled.get(shard) ?? { checks: 0, unreachable: 0, received: this.inbound.receivedPerShard[shard]! };
      let state;
      try {
        state = await this.link.streamState(stream);
      } catch (err) {
        st.unreachable++;
        this.stalled.set(shard, st);
        this.log.warn('shard stream does not answer', { shard, stream, error: errorMessage(err), checks: st.unreachable });
        if (st.unreachable >= 2) await this.stepDownStream(shard, 'stream without a leader');
        if (st.unreachable >= this.escalateAfterChecks && this.escalate) {
          await this.escalate(`stream ${stream} has not answered for ${st.unreachable} checks`).catch((e) => this.log.warn('escalation failed', { error: errorMessage(e) }));
        }
        continue;
      }
      st.unreachable = 0;
      const applied = this.inbound.positions[shard]!.appliedSeq;
      const waiting = state.lastSeq - Math.max(applied, state.firstSeq - 1);
      if (waiting <= 0) {
        this.stalled.delete(shard);
        continue;
      }
      st.checks++;
      this.stalled.set(shard, st);
      this.log.warn('shard delivers nothing while its stream holds messages beyond this node\'s position', {
        shard, appliedSeq: applied, streamLastSeq: state.lastSeq, waiting, checks: st.checks,
      });
      if (st.checks >= 2) await this.stepDownStream(shard, 'shard stream not delivering');
      if (st.checks >= this.escalateAfterChecks && this.escalate) {
        await this.escalate(`stream ${stream} has delivered nothing for ${st.checks} checks while it holds messages beyond this node's position`)
          .catch((e) => this.log.warn('escalation failed', { error: errorMessage(e) }));
      }
      this.reread(shard);
    }
    this.stats.stalledShards = [...this.stalled.keys()].sort((a, b) => a - b);
  }

  /**
   * Read the shard again in the background: against a JetStream that cannot place a consumer,
   * re-reading retries for minutes (Inbound.restartShard), and the doctor's next checks — the
   * step-down, the escalation — must not wait for it (chaos seed 606 on 7468046: both doctors of
   * a node sat in one re-read for the rest of the run while its shards stayed stuck).
   */
  private reread(shard: number): void {
    if (this.rereading.has(shard)) return;
    this.rereading.add(shard);
    this.inbound.restartShard(shard)
      .then(() => { this.stats.rereads++; })
      .catch((err) => this.log.warn('reading the shard again failed (next check retries)', { shard, error: errorMessage(err) }))
      .finally(() => this.rereading.delete(shard));
  }

  private async stepDownStream(shard: number, why: string): Promise<void> {
    const now = Date.now();
    if (now - (this.lastStreamNudge.get(shard) ?? 0) < this.limits.nudgeIntervalMs) return;
    this.lastStreamNudge.set(shard, now);
    const stream = this.streamOf(shard);
    try {
      const answer = await this.link.stepDownStreamLeader(stream);
      this.stats.streamStepDowns++;
      this.log.warn(`${why}; asked the stream leader to step down`, { shard, stream, answer });
    } catch (err) {
      this.log.warn('stream leader step-down request failed', { shard, stream, error: errorMessage(err) });
    }
  }
}
