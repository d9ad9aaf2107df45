import { connect, type NatsConnection } from '@nats-io/transport-node';
import { DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages } from '@nats-io/jetstream';
import { decodeBatch } from '../src/codec/batch-codec.ts';
import { unsealUnverified } from '../src/security/envelope.ts';
import { decodeValues } from '../src/codec/value-codec.ts';
import { streamName } from '../src/shard/shard-router.ts';
import { chaosTables, keyId, type ChaosTable } from './workload.ts';

/** One change as published by a node (seen through the observer's own durable consumers). */
export interface ObservedChange {
  readonly t: ChaosTable;
  readonly k: string;
  readonly hlc: bigint;
  readonly node: string;
  readonly deleted: boolean;
  readonly v: string | null;
}

/** `fn` until it succeeds: at most 20 attempts over about 30 s, then its last error. */
async function retry<T>(what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (err) {
      if (attempt >= 20) throw new Error(`${what}: ${(err as Error).message}`, { cause: err });
      await new Promise((r) => setTimeout(r, Math.min(2000, 100 * attempt)));
    }
  }
}

/**
 * Records every change published to the cluster's shard streams, read from the start of each
 * stream by an ordered consumer of nats.js (its own implementation, not burrow's readers, so a
 * reader bug cannot hide itself): in-memory, recreated by the client from the last sequence it
 * delivered whenever its server dies or its heartbeats stop. A durable consumer per stream did
 * not survive the chaos on nats-server 2.9.10: after quorum kills and member removals some
 * stayed leaderless for good, and the run could never see that it had caught up (seed 606).
 * Connected to every node's server, so it survives any single kill.
 */
export class Observer {
  readonly changes: ObservedChange[] = [];
  private readonly iters: (ConsumerMessages | null)[];
  /** Per shard: the stream sequence of the last message recorded, and when one last came. */
  private readonly lastSeq: number[];
  private readonly lastMs: number[];
  malformed = 0;
  /** Readers started again because they had stopped while their stream held more (pending()). */
  restarts = 0;
  /** pending() calls that failed in a row. */
  private failures = 0;

  private constructor(private readonly nc: NatsConnection, private readonly cluster: string, private readonly shards: number) {
    this.lastSeq = Array.from({ length: shards }, () => 0);
    this.lastMs = Array.from({ length: shards }, () => Date.now());
    this.iters = Array.from({ length: shards }, () => null);
  }

  static async start(urls: string[], cluster: string, shards: number): Promise<Observer> {
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'chaos-observer' });
    const o = new Observer(nc, cluster, shards);
    for (let s = 0; s < shards; s++) await o.read(s);
    return o;
  }

  /** (Re)start shard `s`'s reader after the last sequence recorded. */
  private async read(s: number): Promise<void> {
    const js = jetstream(this.nc, { timeout: 5000 });
    const stream = streamName(this.cluster, s);
    const from = this.lastSeq[s]! + 1;
    await this.iters[s]?.close().catch(() => {});
    // Right after start JetStream may answer "temporarily unavailable" while Raft groups settle.
    const c = await retry(`observer consumer on ${stream}`, () => js.consumers.get(stream,
      from > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: from } : { deliver_policy: DeliverPolicy.All }));
    this.lastMs[s] = Date.now();
    this.iters[s] = await c.consume({
      max_messages: 512,
      expires: 5000, // notice a dead server within seconds (missed heartbeats), not 30 s
      callback: (m) => {
        this.lastMs[s] = Date.now();
        if (m.seq <= this.lastSeq[s]!) return; // delivered again after a reset
        this.record(m.data);
        this.lastSeq[s] = m.seq;
      },
    });
  }

  /** Record the changes of one published batch (from a stream, or from a node's sent log). */
  record(data: Uint8Array): void {
    try {
      const b = decodeBatch(unsealUnverified(data));
      for (const ch of b.changes) {
        const table = b.tables[ch.t]!;
        // The DDL workload's tables (chaos/ddl.ts) are checked by their final rows, not by history.
        if (!(chaosTables as readonly string[]).includes(table.n)) continue;
        let v: string | null = null;
        if (ch.r) {
          const row = decodeValues(ch.r);
          v = row[table.c.indexOf('v')] as string;
        }
        this.changes.push({ t: table.n as ChaosTable, k: keyId(decodeValues(ch.k)), hlc: ch.h, node: b.o, deleted: ch.d === 1, v });
      }
    } catch {
      this.malformed++;
    }
  }

  /**
   * Messages the streams hold beyond what the observer recorded, over all shards. A reader that
   * is behind and got nothing for 10 s is started again from where it stopped (nats.js's ordered
   * consumer did not always come back after the chaos killed its server: seed 606).
   */
  async pending(): Promise<number> {
    try {
      const n = await this.pendingOnce();
      this.failures = 0;
      return n;
    } catch (err) {
      // A server whose JetStream API stopped answering keeps its clients (seed 606, after member
      // removals on nats-server 2.9.10: every stream info timed out for 5 minutes while the nodes
      // replicated): after three failures in a row, move to another server.
      if (++this.failures % 3 === 0) await this.nc.reconnect().catch(() => {});
      throw err;
    }
  }

  private async pendingOnce(): Promise<number> {
    const jsm = await jetstreamManager(this.nc, { timeout: 5000 });
    let n = 0;
    for (let s = 0; s < this.shards; s++) {
      const info = await jsm.streams.info(streamName(this.cluster, s));
      const behind = Math.max(0, info.state.last_seq - this.lastSeq[s]!);
      if (behind > 0 && Date.now() - this.lastMs[s]! > 10_000) {
        this.restarts++;
        await this.read(s);
      }
      n += behind;
    }
    return n;
  }

  async stop(): Promise<void> {
    for (const it of this.iters) await it?.close().catch(() => {});
    await this.nc.close().catch(() => {});
  }
}
