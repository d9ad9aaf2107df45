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
  private readonly iters: ConsumerMessages[] = [];
  /** Per shard: the stream sequence of the last message recorded. */
  private readonly lastSeq: number[];
  malformed = 0;

  private constructor(private readonly nc: NatsConnection, private readonly cluster: string, private readonly shards: number) {
    this.lastSeq = Array.from({ length: shards }, () => 0);
  }

  static async start(urls: string[], cluster: string, shards: number): Promise<Observer> {
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'chaos-observer' });
    const o = new Observer(nc, cluster, shards);
    const js = jetstream(nc, { timeout: 5000 });
    for (let s = 0; s < shards; s++) {
      const stream = streamName(cluster, s);
      // Right after start JetStream may answer "temporarily unavailable" while Raft groups settle.
      const c = await retry(`observer consumer on ${stream}`, () => js.consumers.get(stream, { deliver_policy: DeliverPolicy.All }));
      o.iters.push(await c.consume({
        max_messages: 512,
        expires: 5000, // notice a dead server within seconds (missed heartbeats), not 30 s
        callback: (m) => {
          if (m.seq <= o.lastSeq[s]!) return; // delivered again after a reset
          o.record(m.data);
          o.lastSeq[s] = m.seq;
        },
      }));
    }
    return o;
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

  /** Messages the streams hold beyond what the observer recorded, over all shards. */
  async pending(): Promise<number> {
    const jsm = await jetstreamManager(this.nc, { timeout: 5000 });
    let n = 0;
    for (let s = 0; s < this.shards; s++) {
      const info = await jsm.streams.info(streamName(this.cluster, s));
      n += Math.max(0, info.state.last_seq - this.lastSeq[s]!);
    }
    return n;
  }

  async stop(): Promise<void> {
    for (const it of this.iters) await it.close().catch(() => {});
    await this.nc.close().catch(() => {});
  }
}
