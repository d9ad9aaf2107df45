import { AckPolicy, DeliverPolicy, jetstreamManager, type ConsumerInfo, type ConsumerMessages, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { publisherOfSubject, streamName } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import { originOfMsgId } from '../codec/batch-codec.ts';
import { sleep } from './nats-link.ts';
import type { Logger } from '../util/log.ts';

/** One message read from a shard stream. */
export interface InboundMessage {
  readonly shard: number;
  readonly seq: number;
  readonly data: Uint8Array;
  /**
   * Who published it: the node its subject names (the server only lets a member publish on its
   * own subjects when [security] auth is on); for a message stored under a legacy subject, the
   * origin its msgID header names (originOfMsgId), a claim only.
   */
  readonly origin?: string;
}

export type InboundOutcome = { readonly kind: 'applied' } | { readonly kind: 'held' };

/**
 * What the readers need from the apply side: apply synchronously, one outcome per message. The
 * apply transaction stores each shard's position (the highest sequence applied without a held
 * message before it): where this node reads on from after a restart.
 */
export interface MessageSink {
  apply(messages: readonly InboundMessage[]): readonly InboundOutcome[];
}

export interface InboundLimits {
  /** Most bytes of messages handed to one apply call (at least one message). */
  readonly applyBytesMax: number;
  /** Most messages handed to one apply call (one SQLite transaction). */
  readonly applyMessagesMax: number;
  /** Messages each shard's reader keeps buffered; a shard with twice that queued waits (memory bound). */
  readonly pullMessagesMax: number;
  /** Before a shard is read again from a held message, or after a failed apply. */
  readonly retryDelayMs: number;
}

export interface ShardPosition {
  /** Highest stream sequence applied in this process or earlier (seeded from the database). */
  appliedSeq: number;
  /** The stream's last sequence when the node started: ready once appliedSeq reaches it. */
  targetSeq: number;
  caughtUp: boolean;
  /**
   * At start the stream no longer held the messages after this node's position (its first
   * sequence was beyond it): they were dropped by retention before this node read them.
   */
  pastRetention: boolean;
}

/** A reader's consumer left behind (its node died) disappears after this long. */
const consumerInactiveMs = 30_000;
/** Creating a reader's consumer: attempts (each with a short timeout: see Inbound.open). */
const createAttemptsMax = 40;
const createTimeoutMs = 1500;

/**
 * Close a reader without waiting on it for long: closing waits for the pull in flight, which a
 * dead server never answers (a stop or a re-read must not hang on it).
 */
async function closeQuietly(m: ConsumerMessages | null): Promise<void> {
  if (!m) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([m.close().catch(() => {}), new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
  clearTimeout(timer);
}

interface Reader {
  /** Bumped by every (re)open: queued messages and loops of an older reader are dropped. */
  gen: number;
  messages: ConsumerMessages | null;
  consumerName: string | null;
  queued: number;
  /** Read from here at the next open (a held message), else appliedSeq + 1. */
  resumeSeq: number | null;
  wake: (() => void) | null;
  reopenTimer: NodeJS.Timeout | null;
}

/**
 * Reads every shard stream with an in-memory consumer of this node's own (R1, no acks, created
 * from the position the node stored, created again from there whenever it is lost), so nothing on
 * the server belongs to a node and a node that is down or removed holds nothing back.
 * Messages from all shards go into one queue; a drain step hands up to applyMessagesMax of them
 * to the sink in one call (one transaction). A held message, or a failed apply, makes its shard
 * read again from there after retryDelayMs.
 */
export class Inbound {
  private queue: { shard: number; gen: number; m: JsMsg }[] = [];
  private readyTimer: NodeJS.Timeout | null = null;
  private rechecking = false;
  private scheduled = false;
  private readonly readers: Reader[];
  /** When each shard last delivered a message (or started): the doctor looks at long-silent shards. */
  private readonly lastMessageMs: number[];
  /** Messages received per shard since start. */
  readonly receivedPerShard: number[];
  /** Per shard, the stream's last sequence as of the last delivery (its sequence + JetStream's pending count). */
  readonly streamLast: number[];
  restarts = 0;
  private running = false;
  private jsm: JetStreamManager | null = null;
  /** Short timeouts for creating readers (see open). */
  private jsmFast: JetStreamManager | null = null;
  readonly positions: ShardPosition[];
  readonly stats = { received: 0, applied: 0, held: 0, failedApplies: 0, leaderRestarts: 0, readerLosses: 0, lastError: null as string | null };
  private readonly leaderRestartMs: number[] = [];

  constructor(
    private readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly cluster: string,
    private readonly shards: number,
    private readonly sink: MessageSink,
    private readonly limits: InboundLimits,
    private readonly log: Logger,
    initialApplied: ReadonlyMap<number, number>,
    /** The stream a "shard" reads (the shard streams by default; the schema stream is read as one shard). */
    private readonly streamOf: (shard: number) => string = (shard) => streamName(cluster, shard),
  ) {
    this.positions = Array.from({ length: shards }, (_, s) => ({ appliedSeq: initialApplied.get(s) ?? 0, targetSeq: 0, caughtUp: false, pastRetention: false }));
    this.readers = Array.from({ length: shards }, () => ({ gen: 0, messages: null, consumerName: null, queued: 0, resumeSeq: null, wake: null, reopenTimer: null }));
    this.lastMessageMs = Array.from({ length: shards }, () => Date.now());
    this.receivedPerShard = Array.from({ length: shards }, () => 0);
    this.streamLast = Array.from({ length: shards }, () => 0);
  }

  async start(): Promise<void> {
    this.running = true;
    const jsm = await this.js.jetstreamManager();
    this.jsm = jsm;
    this.jsmFast = await jetstreamManager(this.nc, { timeout: createTimeoutMs, checkAPI: false });
    // A shard not caught up and silent (JetStream renumbered or lost messages after hard kills, so
    // the start target is never delivered) is caught up once its stream holds nothing beyond it.
    this.readyTimer = setInterval(() => void this.recheckReadiness(), 2000);
    await Promise.all(Array.from({ length: this.shards }, async (_, shard) => {
      const info = await jsm.streams.info(this.streamOf(shard));
      const pos = this.positions[shard]!;
      pos.targetSeq = info.state.last_seq;
      if (pos.appliedSeq + 1 < info.state.first_seq) {
        pos.pastRetention = true;
        this.log.error('this node fell behind the shard stream\'s retention: messages it never read are gone from JetStream '
          + '(gap repair asks their origins for what they still keep; a restore from a snapshot is needed otherwise)', {
          shard, appliedSeq: pos.appliedSeq, streamFirstSeq: info.state.first_seq,
        });
      }
      if (pos.appliedSeq > info.state.last_seq) {
        // The stream was reset or renumbered (JetStream lost messages after hard kills): read what
        // it holds now; what was lost comes from the origins (gap repair).
        this.log.warn('shard stream is behind this node\'s stored position; reading it from its last message', { shard, appliedSeq: pos.appliedSeq, streamLastSeq: info.state.last_seq });
        pos.appliedSeq = info.state.last_seq;
      }
      if (pos.appliedSeq >= pos.targetSeq) pos.caughtUp = true;
      await this.open(shard);
    }));
  }

  /**
   * (Re)create the shard's reader from its position and read it until replaced or stopped. The
   * consumer is ephemeral, in memory, R1, without acks: this node's alone, gone by itself when
   * the node is (inactive threshold). nats-server 2.9 places it on a random peer of the stream,
   * offline ones included (its create then never answers), so creating is retried with a short
   * timeout until it lands on a live server.
   */
  private async open(shard: number): Promise<void> {
    const r = this.readers[shard]!;
    const gen = ++r.gen;
    this.dropQueued(shard);
    r.wake?.(); // an old loop waiting for queue space ends now
    const old = r.messages;
    r.messages = null;
    await closeQuietly(old);
    if (r.consumerName) this.deleteConsumer(shard, r.consumerName);
    r.consumerName = null;
    const from = r.resumeSeq ?? this.positions[shard]!.appliedSeq + 1;
    r.resumeSeq = null;
    const ci = await this.createConsumer(shard, from, gen);
    if (!ci) return;
    r.consumerName = ci.name;
    const messages = await this.js.consumers.getConsumerFromInfo(ci).consume({
      // The server sends a heartbeat every 0.5 s while a pull is idle; two missed (a dead server,
      // a consumer gone with a stream leader) and the shard is read again from its position.
      max_messages: this.limits.pullMessagesMax, expires: 2000, idle_heartbeat: 500,
    });
    if (!this.running || gen !== r.gen) {
      await closeQuietly(messages);
      return;
    }
    r.messages = messages;
    this.lastMessageMs[shard] = Date.now();
    void this.watch(shard, gen, messages);
    void this.read(shard, gen, messages, from);
  }

  private async createConsumer(shard: number, from: number, gen: number): Promise<ConsumerInfo | null> {
    const r = this.readers[shard]!;
    const config = {
      ack_policy: AckPolicy.None,
      deliver_policy: from > 1 ? DeliverPolicy.StartSequence : DeliverPolicy.All,
      ...(from > 1 ? { opt_start_seq: from } : {}),
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(consumerInactiveMs),
    };
    for (let attempt = 1; ; attempt++) {
      if (!this.running || gen !== r.gen) return null;
      try {
        return await this.jsmFast!.consumers.add(this.streamOf(shard), config);
      } catch (err) {
        if (attempt >= createAttemptsMax) throw err;
        await sleep(Math.min(500, 50 * attempt));
      }
    }
  }

  private deleteConsumer(shard: number, name: string): void {
    this.jsmFast?.consumers.delete(this.streamOf(shard), name).catch(() => { /* gone with its server: the inactive threshold removes it */ });
  }

  /** Heartbeats missed, or the consumer gone: read the shard again from its position. */
  private async watch(shard: number, gen: number, messages: ConsumerMessages): Promise<void> {
    const r = this.readers[shard]!;
    for await (const s of messages.status()) {
      if (!this.running || gen !== r.gen) return;
      const lost = (s.type === 'heartbeats_missed' && s.count >= 2) || s.type === 'consumer_deleted' || s.type === 'consumer_not_found'
        || s.type === 'stream_not_found' || s.type === 'no_responders';
      if (lost) {
        this.stats.readerLosses++;
        this.reopenLater(shard, 0);
        return;
      }
    }
  }

  private async read(shard: number, gen: number, messages: ConsumerMessages, from: number): Promise<void> {
    const r = this.readers[shard]!;
    let expectSeq = from;
    let expectDelivery = 1;
    try {
      for await (const m of messages) {
        if (!this.running || gen !== r.gen) break;
        // No acks: a message lost between server and client shows as a skipped delivery number.
        if (m.info.deliverySequence !== expectDelivery) {
          this.stats.readerLosses++;
          this.reopenLater(shard, 0);
          break;
        }
        if (expectDelivery === 1 && m.seq > from) void this.checkRetention(shard, from);
        expectDelivery++;
        expectSeq = m.seq + 1;
        this.enqueue(shard, gen, m);
        // Backpressure: the next pull waits while this shard has enough queued.
        while (this.running && gen === r.gen && r.queued >= 2 * this.limits.pullMessagesMax) {
          await new Promise<void>((resolve) => (r.wake = resolve));
        }
      }
    } catch (err) {
      if (this.running && gen === r.gen) {
        this.stats.lastError = errorMessage(err);
        this.log.warn('shard reader ended; reading again from the stored position', { shard, error: this.stats.lastError });
        this.reopenLater(shard);
      }
    }
  }

  /** The first message read was beyond the position asked for: did retention drop what came before? */
  private async checkRetention(shard: number, from: number): Promise<void> {
    try {
      const info = await this.jsm!.streams.info(this.streamOf(shard));
      if (!this.running || from >= info.state.first_seq) return;
      this.positions[shard]!.pastRetention = true;
      // Its own batches among them are skipped anyway; gap repair fetches the others from their
      // origins' sent logs, and batches no one still has make the node restore (node.ts).
      this.log.warn('this node read the shard stream too slowly or was cut off: messages it never read are gone from JetStream', {
        shard, appliedSeq: from - 1, streamFirstSeq: info.state.first_seq,
      });
    } catch (err) {
      this.log.warn('could not check the shard stream\'s first sequence', { shard, error: errorMessage(err) });
    }
  }

  private dropQueued(shard: number): void {
    if (this.readers[shard]!.queued === 0) return;
    this.queue = this.queue.filter((q) => q.shard !== shard);
    this.readers[shard]!.queued = 0;
  }

  private reopenLater(shard: number, delayMs = this.limits.retryDelayMs): void {
    const r = this.readers[shard]!;
    r.gen++; // what is queued or in flight for this shard is stale now
    this.dropQueued(shard);
    r.wake?.();
    if (r.reopenTimer) return;
    r.reopenTimer = setTimeout(() => {
      r.reopenTimer = null;
      if (this.running) this.restartShard(shard).catch((err) => this.log.warn('re-reading the shard failed; the shard doctor will retry', { shard, error: errorMessage(err) }));
    }, delayMs);
  }

  /** Shards that delivered nothing for `ms` (normal for an idle shard; the doctor asks the server whether it should have). */
  silentShards(ms: number): number[] {
    const now = Date.now();
    return this.lastMessageMs.flatMap((t, shard) => (now - t >= ms ? [shard] : []));
  }

  /** Read the shard again from its position with a new consumer (bounded retries). */
  async restartShard(shard: number): Promise<void> {
    this.restarts++;
    for (let attempt = 1; this.running; attempt++) {
      try {
        await this.open(shard);
        return;
      } catch (err) {
        if (attempt >= 20) throw err;
        await sleep(Math.min(1000, 100 * attempt));
      }
    }
  }

  /**
   * JetStream elected a new leader for the shard's stream (an advisory): the consumer on the old
   * leader may be gone with it, so read from the new one now rather than after missed heartbeats.
   */
  streamLeaderElected(shard: number): void {
    if (!this.running || shard < 0 || shard >= this.shards || !this.readers[shard]!.messages) return;
    const now = Date.now();
    if (now - (this.leaderRestartMs[shard] ?? 0) < 250) return;
    this.leaderRestartMs[shard] = now;
    this.stats.leaderRestarts++;
    this.restartShard(shard).catch((err) => this.log.warn('re-reading after a stream leader election failed; the shard doctor will retry', { shard, error: errorMessage(err) }));
  }

  private async recheckReadiness(): Promise<void> {
    if (this.rechecking || !this.running || !this.jsm) return;
    const waiting = this.positions.flatMap((p, shard) => (p.caughtUp ? [] : [shard]));
    if (waiting.length === 0) {
      if (this.readyTimer) clearInterval(this.readyTimer);
      this.readyTimer = null;
      return;
    }
    this.rechecking = true;
    try {
      for (const shard of waiting) {
        if (this.readers[shard]!.queued > 0) continue;
        try {
          const info = await this.jsm.streams.info(this.streamOf(shard));
          const pos = this.positions[shard]!;
          if (info.state.last_seq <= pos.appliedSeq && this.readers[shard]!.queued === 0) {
            pos.caughtUp = true;
            this.log.info('shard caught up (its stream holds nothing beyond what was applied)', { shard, appliedSeq: pos.appliedSeq, startSeq: pos.targetSeq });
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

  /**
   * Messages of a shard not applied yet: the stream's end as last seen minus this node's applied
   * position (stable while applying is blocked: the position only moves with a committed apply).
   */
  lagOf(shard: number): number {
    return Math.max(0, (this.streamLast[shard] ?? 0) - (this.positions[shard]?.appliedSeq ?? 0));
  }

  private enqueue(shard: number, gen: number, m: JsMsg): void {
    this.stats.received++;
    this.lastMessageMs[shard] = Date.now();
    this.receivedPerShard[shard]!++;
    this.streamLast[shard] = m.seq + m.info.pending;
    this.readers[shard]!.queued++;
    this.queue.push({ shard, gen, m });
    if (!this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  private drain(): void {
    this.scheduled = false;
    if (!this.running || this.queue.length === 0) return;
    // One transaction takes up to applyMessagesMax messages and about applyBytesMax bytes (at least
    // one): big batches make short transactions while the next ones arrive.
    let n = 0;
    let bytes = 0;
    while (n < this.queue.length && n < this.limits.applyMessagesMax && (n === 0 || bytes + this.queue[n]!.m.data.length <= this.limits.applyBytesMax)) {
      bytes += this.queue[n]!.m.data.length;
      n++;
    }
    const take = this.queue.splice(0, n).filter((q) => q.gen === this.readers[q.shard]!.gen);
    for (const { shard } of take) {
      const r = this.readers[shard]!;
      r.queued--;
      if (r.wake && r.queued < this.limits.pullMessagesMax) {
        const w = r.wake;
        r.wake = null;
        w();
      }
    }
    const msgs = take.map(({ shard, m }) => ({ shard, seq: m.seq, data: m.data, origin: publisherOfSubject(this.cluster, m.subject) ?? originOfMsgId(m.headers?.get('Nats-Msg-Id')) }));
    let outcomes: readonly InboundOutcome[] | null = null;
    try {
      outcomes = this.sink.apply(msgs);
    } catch (err) {
      this.stats.failedApplies++;
      this.stats.lastError = errorMessage(err);
      this.log.error('apply transaction failed; its shards are read again from their positions', { messages: msgs.length, error: this.stats.lastError });
    }
    const again = new Map<number, number>();
    for (const [i, { shard, m }] of take.entries()) {
      const o = outcomes?.[i];
      const pos = this.positions[shard]!;
      if (o && o.kind === 'applied' && !again.has(shard)) {
        this.stats.applied++;
        if (m.seq > pos.appliedSeq) pos.appliedSeq = m.seq;
        if (!pos.caughtUp && (pos.appliedSeq >= pos.targetSeq || m.info.pending === 0)) pos.caughtUp = true;
      } else if (!again.has(shard)) {
        // Held (its clock is too far ahead, or the waiting room is full) or the apply failed: this
        // shard is read again from this message; what followed it is read again too (idempotent).
        this.stats.held++;
        again.set(shard, m.seq);
      }
    }
    for (const [shard, seq] of again) {
      this.readers[shard]!.resumeSeq = seq;
      this.reopenLater(shard);
    }
    if (this.queue.length > 0 && !this.scheduled) {
      this.scheduled = true;
      setImmediate(() => this.drain());
    }
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.readyTimer) clearInterval(this.readyTimer);
    for (const r of this.readers) {
      if (r.reopenTimer) clearTimeout(r.reopenTimer);
      r.wake?.();
    }
    await Promise.all(this.readers.map((r, shard) => {
      if (r.consumerName) this.deleteConsumer(shard, r.consumerName);
      return closeQuietly(r.messages);
    }));
    // Unapplied queued messages are read again after a restart, from the stored positions.
    this.queue = [];
  }
}
