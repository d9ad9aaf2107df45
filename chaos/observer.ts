import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager, type ConsumerMessages } from '@nats-io/jetstream';
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

const observerConsumer = 'chaos_observer';

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
 * Records every change published to the cluster's shard streams through a durable consumer per
 * stream (created before the workload starts; with interest retention nothing is removed before
 * it has seen it). Connected to every node's server, so it survives any single kill.
 */
export class Observer {
  readonly changes: ObservedChange[] = [];
  private readonly iters: ConsumerMessages[] = [];
  malformed = 0;

  private constructor(private readonly nc: NatsConnection, private readonly cluster: string, private readonly shards: number) {}

  static async start(urls: string[], cluster: string, shards: number): Promise<Observer> {
    const nc = await connect({ servers: urls, maxReconnectAttempts: -1, reconnectTimeWait: 250, name: 'chaos-observer' });
    const o = new Observer(nc, cluster, shards);
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    const js = jetstream(nc, { timeout: 5000 });
    for (let s = 0; s < shards; s++) {
      const stream = streamName(cluster, s);
      // Right after start JetStream may answer "temporarily unavailable" while Raft groups settle.
      const c = await retry(`observer consumer on ${stream}`, async () => {
        await jsm.consumers.add(stream, {
          durable_name: observerConsumer, ack_policy: AckPolicy.Explicit, deliver_policy: DeliverPolicy.All,
          ack_wait: nanos(5_000), max_deliver: -1, max_ack_pending: 4096,
        });
        return js.consumers.get(stream, observerConsumer);
      });
      o.iters.push(await c.consume({
        max_messages: 512,
        expires: 5000, // notice a dead server within seconds (missed heartbeats), not 30 s
        callback: (m) => {
          o.record(m.data);
          m.ack();
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

  /** Messages not yet delivered to or acknowledged by the observer, over all shards. */
  async pending(): Promise<number> {
    const jsm = await jetstreamManager(this.nc, { timeout: 5000 });
    let n = 0;
    for (let s = 0; s < this.shards; s++) {
      const info = await jsm.consumers.info(streamName(this.cluster, s), observerConsumer);
      n += info.num_pending + info.num_ack_pending;
    }
    return n;
  }

  async stop(): Promise<void> {
    for (const it of this.iters) await it.close().catch(() => {});
    await this.nc.close().catch(() => {});
  }
}
