import type { Inbound } from '../replication/inbound.ts';
import type { NatsLink } from '../replication/nats-link.ts';
import type { Publisher } from '../replication/publisher.ts';
import { consumerName, streamName } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

/**
 * Watches for shards JetStream left stuck and nudges them, bounded in rate.
 *
 * nats-server 2.9's Raft recovery after repeated hard kills (quorum loss) can leave a stream
 * refusing publishes, or a consumer not delivering what its stream holds, for minutes; a leader
 * step-down (a new election) unsticks both within seconds. The doctor never touches data: it only
 * re-subscribes and asks for elections.
 *
 * - publish side: a shard whose publishes have failed for `stuckMs` → stream leader step-down.
 * - consume side: a shard silent for `stuckMs` whose consumer reports undelivered or unacked
 *   messages → first re-subscribe (client side), and if it is still stuck at the next check, a
 *   consumer leader step-down. A consumer that does not answer at all (no leader) for two checks
 *   in a row → stream leader step-down.
 */
export interface DoctorLimits {
  readonly stuckMs: number;
  /** Least time between two nudges of the same shard (each kind). */
  readonly nudgeIntervalMs: number;
}

export interface DoctorStats {
  streamStepDowns: number;
  consumerStepDowns: number;
  resubscribes: number;
  consumerChecks: number;
  stalledShards: number[];
}

export class ShardDoctor {
  readonly stats: DoctorStats = { streamStepDowns: 0, consumerStepDowns: 0, resubscribes: 0, consumerChecks: 0, stalledShards: [] };
  private readonly lastStreamNudge = new Map<number, number>();
  private readonly lastConsumerCheck = new Map<number, number>();
  private readonly lastConsumerNudge = new Map<number, number>();
  /** Consecutive checks that found the shard stalled (or its consumer unreachable). */
  private readonly stalled = new Map<number, { checks: number; unreachable: number; received: number }>();
  private busy = false;

  constructor(
    private readonly cluster: string,
    private readonly nodeId: string,
    private readonly link: NatsLink,
    private readonly publisher: Publisher,
    private readonly inbound: Inbound,
    private readonly limits: DoctorLimits,
    private readonly log: Logger,
  ) {}

  async tick(): Promise<void> {
    if (this.busy || this.link.nc.isClosed()) return;
    this.busy = true;
    try {
      await this.publishSide();
      await this.consumeSide();
    } finally {
      this.busy = false;
    }
  }

  private async publishSide(): Promise<void> {
    for (const shard of this.publisher.stuckShards(this.limits.stuckMs)) {
      await this.stepDownStream(shard, 'shard publishes failing for long');
    }
  }

  private async consumeSide(): Promise<void> {
    const now = Date.now();
    // A shard that received anything since it was found stalled is healthy again.
    for (const [shard, st] of this.stalled) if (this.inbound.receivedPerShard[shard]! > st.received) this.stalled.delete(shard);
    for (const shard of this.inbound.silentShards(this.limits.stuckMs)) {
      if (now - (this.lastConsumerCheck.get(shard) ?? 0) < this.limits.stuckMs) continue;
      this.lastConsumerCheck.set(shard, now);
      this.stats.consumerChecks++;
      const stream = streamName(this.cluster, shard);
      const consumer = consumerName(this.nodeId);
      const st = this.stalled.get(shard) ?? { checks: 0, unreachable: 0, received: this.inbound.receivedPerShard[shard]! };
      let info;
      try {
        info = await this.link.consumerInfo(stream, consumer);
      } catch (err) {
        st.unreachable++;
        this.stalled.set(shard, st);
        this.log.warn('consumer does not answer', { shard, consumer, error: errorMessage(err), checks: st.unreachable });
        if (st.unreachable >= 2) await this.stepDownStream(shard, 'consumer without a leader');
        continue;
      }
      st.unreachable = 0;
      const waiting = info.num_pending + info.num_ack_pending;
      if (waiting === 0) {
        this.stalled.delete(shard);
        continue;
      }
      st.checks++;
      this.stalled.set(shard, st);
      this.log.warn('shard delivers nothing while its consumer has messages waiting', {
        shard, pending: info.num_pending, ackPending: info.num_ack_pending, delivered: info.delivered.stream_seq, checks: st.checks,
      });
      if (st.checks >= 2 && now - (this.lastConsumerNudge.get(shard) ?? 0) >= this.limits.nudgeIntervalMs) {
        this.lastConsumerNudge.set(shard, now);
        try {
          const answer = await this.link.stepDownConsumerLeader(stream, consumer);
          this.stats.consumerStepDowns++;
          this.log.warn('asked the consumer leader to step down', { shard, consumer, answer });
        } catch (err) {
          this.log.warn('consumer leader step-down request failed', { shard, consumer, error: errorMessage(err) });
        }
      }
      try {
        await this.inbound.restartShard(shard);
        this.stats.resubscribes++;
      } catch (err) {
        this.log.warn('re-subscribing the shard failed (next check retries)', { shard, error: errorMessage(err) });
      }
    }
    this.stats.stalledShards = [...this.stalled.keys()].sort((a, b) => a - b);
  }

  private async stepDownStream(shard: number, why: string): Promise<void> {
    const now = Date.now();
    if (now - (this.lastStreamNudge.get(shard) ?? 0) < this.limits.nudgeIntervalMs) return;
    this.lastStreamNudge.set(shard, now);
    const stream = streamName(this.cluster, shard);
    try {
      const answer = await this.link.stepDownStreamLeader(stream);
      this.stats.streamStepDowns++;
      this.log.warn(`${why}; asked the stream leader to step down`, { shard, stream, answer });
    } catch (err) {
      this.log.warn('stream leader step-down request failed', { shard, stream, error: errorMessage(err) });
    }
  }
}
