import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import { consumerName, streamName } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import { originOfMsgId } from '../codec/batch-codec.ts';
import { sleep } from './nats-link.ts';
import type { Logger } from '../util/log.ts';

/** One message fetched from a shard stream. */
export interface InboundMessage {
  readonly shard: number;
  readonly seq: number;
  readonly data: Uint8Array;
  /** The origin named by the message's msgID header, when it has one (originOfMsgId). */
  readonly origin?: string;
}

export type InboundOutcome = { readonly kind: 'applied' } | { readonly kind: 'held' };

/** What the consumers need from the apply side: apply synchronously, one outcome per message. */
export interface MessageSink {
  apply(messages: readonly InboundMessage[]): readonly InboundOutcome[];
}

export interface InboundLimits {
  /** Most bytes of messages handed to one apply call (at least one message). */
  readonly applyBytesMax: number;
  /** Most messages handed to one apply call (one SQLite transaction). */
  readonly applyMessagesMax: number;
  /** Messages each shard's pull keeps buffered. */
  readonly pullMessagesMax: number;
  /** Redelivery delay for held messages and failed transactions. */
  readonly retryDelayMs: number;
  /** The consumers' ack wait. */
  readonly ackWaitMs: number;
}

export interface ShardPosition {
  /** Highest stream sequence applied in this process or earlier (seeded from the database). */
  appliedSeq: number;
  /** The stream's last sequence when the node started: ready once appliedSeq reaches it. */
  targetSeq: number;
  caughtUp: boolean;
}

/**
 * One durable pull consumer per shard for this node. Messages from all shards go into one queue;
 * a drain step hands up to applyMessagesMax of them to the sink in one call (one transaction),
 * then acks (or naks held ones / all of a failed call with a delay). Memory is bounded by the
 * consumers' max_ack_pending.
 */
export class Inbound {
  private queue: { shard: number; m: JsMsg; atMs: number }[] = [];
  private workingTimer: NodeJS.Timeout | null = null;
  private readyTimer: NodeJS.Timeout | null = null;
  private rechecking = false;
  private scheduled = false;
  private readonly iters: (ConsumerMessages | null)[];
  /** When each shard last delivered a message (or started): the doctor looks at long-silent shards. */
  private readonly lastMessageMs: number[];
  /** Messages received per shard since start. */
  readonly receivedPerShard: number[];
  restarts = 0;
  private running = false;
  readonly positions: ShardPosition[];
  readonly stats = { received: 0, acked: 0, naked: 0, failedApplies: 0, leaderRestarts: 0, lastError: null as string | null };
  private readonly leaderRestartMs: number[] = [];

  constructor(
    private readonly js: JetStreamClient,
    private readonly cluster: string,
    private readonly nodeId: string,
    private readonly shards: number,
    private readonly sink: MessageSink,
    private readonly limits: InboundLimits,
    private readonly log: Logger,
    initialApplied: ReadonlyMap<number, number>,
  ) {
    this.positions = Array.from({ length: shards }, (_, s) => ({ appliedSeq: initialApplied.get(s) ?? 0, targetSeq: 0, caughtUp: false }));
    this.iters = Array.from({ length: shards }, () => null);
    this.lastMessageMs = Array.from({ length: shards }, () => Date.now());
    this.receivedPerShard = Array.from({ length: shards }, () => 0);
  }

  async start(): Promise<void> {
    this.running = true;
    // Messages queued longer than half the ack wait are marked in progress so JetStream does not
    // redeliver them while they wait their turn (a backlog after a restart).
    this.workingTimer = setInterval(() => {
      const old = Date.now() - this.limits.ackWaitMs / 2;
      for (const q of this.queue) {
        if (q.atMs > old) break;
        q.m.working();
        q.atMs = Date.now();
      }
    }, Math.max(100, this.limits.ackWaitMs / 4));
    const jsm = await this.js.jetstreamManager();
    // A shard not caught up and silent (JetStream renumbered or lost messages after hard kills, so
    // the start target is never delivered) is caught up when its consumer has nothing waiting.
    this.readyTimer = setInterval(() => void this.recheckReadiness(jsm), 2000);
    await Promise.all(Array.from({ length: this.shards }, async (_, shard) => {
      const stream = streamName(this.cluster, shard);
      const info = await jsm.streams.info(stream);
      const pos = this.positions[shard]!;
      pos.targetSeq = info.state.last_seq;
      const cinfo = await jsm.consumers.info(stream, consumerName(this.nodeId));
      // Messages this consumer already acknowledged (before a restart) count as applied.
      if (cinfo.ack_floor.stream_seq > pos.appliedSeq) pos.appliedSeq = cinfo.ack_floor.stream_seq;
      if (pos.appliedSeq >= pos.targetSeq || (cinfo.num_pending === 0 && cinfo.num_ack_pending === 0)) pos.caughtUp = true;
      await this.consume(shard);
    }));
  }

  private async consume(shard: number): Promise<void> {
    const consumer: Consumer = await this.js.consumers.get(streamName(this.cluster, shard), consumerName(this.nodeId));
    if (!this.running) return;
    this.iters[shard] = await consumer.consume({
      max_messages: this.limits.pullMessagesMax,
      expires: 2000,
      // The server sends a heartbeat every 0.5 s while a pull is idle; two missed (a pull lost to a
      // consumer leader change or a dead server) and the client pulls again: ~1 s, not 2.
      idle_heartbeat: 500,
      callback: (m) => this.enqueue(shard, m),
    });
    this.lastMessageMs[shard] = Date.now();
  }

  /** Shards that delivered nothing for `ms` (normal for an idle shard; the doctor asks the server whether it should have). */
  silentShards(ms: number): number[] {
    const now = Date.now();
    return this.lastMessageMs.flatMap((t, shard) => (now - t >= ms ? [shard] : []));
  }

  /** Close a shard's pull subscription and open a new one (unapplied messages are redelivered). */
  async restartShard(shard: number): Promise<void> {
    const it = this.iters[shard];
    this.iters[shard] = null;
    await it?.close().catch(() => {});
    this.restarts++;
    // A consumer just re-elected may not answer at once: retry (bounded); the doctor takes over after.
    for (let attempt = 1; this.running; attempt++) {
      try {
        await this.consume(shard);
        return;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(Math.min(1000, 100 * attempt));
      }
    }
  }

  /**
   * JetStream elected a new leader for this node's consumer on `shard` (an advisory): the pull
   * waiting on the old leader is gone with it, so pull from the new one now rather than after the
   * missed heartbeats and the client's backoff (seconds).
   */
  consumerLeaderElected(shard: number): void {
    if (!this.running || shard < 0 || shard >= this.shards || !this.iters[shard]) return;
    const now = Date.now();
    if (now - (this.leaderRestartMs[shard] ?? 0) < 250) return;
    this.leaderRestartMs[shard] = now;
    this.stats.leaderRestarts++;
    this.restartShard(shard).catch((err) => this.log.warn('re-pulling after a consumer leader election failed; the shard doctor will retry', { shard, error: errorMessage(err) }));
  }

  private async recheckReadiness(jsm: Awaited<ReturnType<JetStreamClient['jetstreamManager']>>): Promise<void> {
    if (this.rechecking || !this.running) return;
    const waiting = this.positions.flatMap((p, shard) => (p.caughtUp ? [] : [shard]));
    if (waiting.length === 0) {
      if (this.readyTimer) clearInterval(this.readyTimer);
      this.readyTimer = null;
      return;
    }
    this.rechecking = true;
    try {
      for (const shard of waiting) {
        if (this.queue.some((q) => q.shard === shard)) continue;
        try {
          const ci = await jsm.consumers.info(streamName(this.cluster, shard), consumerName(this.nodeId));
          if (ci.num_pending === 0 && ci.num_ack_pending === 0 && !this.queue.some((q) => q.shard === shard)) {
            this.positions[shard]!.caughtUp = true;
            this.log.info('shard caught up (its consumer has nothing waiting)', { shard, appliedSeq: this.positions[shard]!.appliedSeq, startSeq: this.positions[shard]!.targetSeq });
          }
        } catch { /* no answer now: next round */ }
      }
    } finally {
      this.rechecking = false;
    }
  }

  ready(): boolean {
    return this.running && this.positions.every((p) => p.caughtUp);
  }

  queued(): number {
    return this.queue.length;
  }

  private enqueue(shard: number, m: JsMsg): void {
    this.stats.received++;
    this.lastMessageMs[shard] = Date.now();
    this.receivedPerShard[shard]!++;
    this.queue.push({ shard, m, atMs: Date.now() });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    if (!this.running || this.queue.length === 0) return;
    // One transaction takes up to applyMessagesMax messages and about applyBytesMax bytes (at least
    // one): big batches make short transactions, so acks flow back while the next ones arrive.
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.limits.applyMessagesMax && (n === 0 || bytes + this.queue[n]!.m.data.length <= this.limits.applyBytesMax)) {
      bytes += this.queue[n]!.m.data.length;
      n++;
    }
    const take = this.queue.splice(0, n);
    const msgs = take.map(({ shard, m }) => ({ shard, seq: m.seq, data: m.data, origin: originOfMsgId(m.headers?.get('Nats-Msg-Id')) }));
    let outcomes: readonly InboundOutcome[] | null = null;
    try {
      outcomes = this.sink.apply(msgs);
    } catch (err) {
      this.stats.failedApplies++;
      this.stats.lastError = errorMessage(err);
      this.log.error('apply transaction failed; messages will be redelivered', { messages: msgs.length, error: this.stats.lastError });
    }
    for (const [i, { shard, m }] of take.entries()) {
      const o = outcomes?.[i];
      if (o && o.kind === 'applied') {
        m.ack();
        this.stats.acked++;
        const pos = this.positions[shard]!;
        if (m.seq > pos.appliedSeq) pos.appliedSeq = m.seq;
        if (!pos.caughtUp && (pos.appliedSeq >= pos.targetSeq || m.info.pending === 0)) pos.caughtUp = true;
      } else {
        m.nak(this.limits.retryDelayMs);
        this.stats.naked++;
      }
    }
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.workingTimer) clearInterval(this.workingTimer);
    if (this.readyTimer) clearInterval(this.readyTimer);
    await Promise.all(this.iters.map((it) => it?.close().catch(() => {})));
    // Unapplied queued messages are simply not acked: JetStream redelivers them after a restart.
    this.queue = [];
  }
}
