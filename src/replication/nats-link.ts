import { connect, nanos, type NatsConnection } from '@nats-io/transport-node';
import {
  AckPolicy, DeliverPolicy, DiscardPolicy, jetstream, jetstreamManager, ReplayPolicy, RetentionPolicy, StorageType,
  type JetStreamClient, type JetStreamManager, type StreamConfig,
} from '@nats-io/jetstream';
import { consumerName, shardSubject, streamName } from '../shard/shard-router.ts';
import { errorMessage } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

export interface StreamPlan {
  readonly cluster: string;
  readonly shards: number;
  readonly replicas: number;
  readonly streamBytesMax: number;
  /** Every node of the cluster gets a durable consumer on every shard (created by whoever comes first). */
  readonly nodeIds: readonly string[];
}

/** Consumer settings, spelled out (never library defaults). */
export const consumerAckWaitMs = 30_000;
export const consumerAckPendingMax = 1024;
export const duplicateWindowMs = 120_000;

/**
 * The node's NATS connection and the JetStream objects burrow uses: one stream per shard (file
 * storage, R = min(replicas, nodes), interest retention so a message lives until every node has
 * acknowledged it, discard-new at the size bound so a full stream refuses publishes — which the
 * outbox retries — instead of dropping history), and one durable pull consumer per (node, shard).
 */
export class NatsLink {
  private constructor(readonly nc: NatsConnection, readonly js: JetStreamClient, readonly jsm: JetStreamManager,
    private readonly probe: JetStreamManager, private readonly log: Logger) {}

  static async connect(servers: readonly string[], name: string, log: Logger): Promise<NatsLink> {
    const nc = await connect({
      servers: [...servers],
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      timeout: 5000,
      pingInterval: 10_000,
    });
    const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
    // A short timeout for the readiness probe: while the meta leader is being elected the request
    // gets no answer, and a long timeout would delay readiness by that much.
    const probe = await jetstreamManager(nc, { timeout: 1000, checkAPI: false });
    const js = jetstream(nc, { timeout: 10_000 });
    const link = new NatsLink(nc, js, jsm, probe, log);
    void (async () => {
      for await (const s of nc.status()) {
        if (s.type === 'disconnect' || s.type === 'reconnect') log.info(`nats ${s.type}`, { server: (s as { server?: string }).server });
      }
    })();
    return link;
  }

  /** Wait until JetStream answers (a meta leader is elected), retrying until `deadlineMs` or stop. */
  async waitForJetStream(deadlineMs: number, stopped: () => boolean): Promise<void> {
    let delay = 100;
    for (;;) {
      try {
        await this.probe.getAccountInfo();
        return;
      } catch (err) {
        if (stopped()) throw err;
        if (Date.now() > deadlineMs) throw new Error(`JetStream not available: ${errorMessage(err)}`);
        await sleep(delay);
        delay = Math.min(delay * 2, 1000);
      }
    }
  }

  streamConfig(plan: StreamPlan, shard: number): Partial<StreamConfig> & { name: string } {
    return {
      name: streamName(plan.cluster, shard),
      subjects: [shardSubject(plan.cluster, shard)],
      storage: StorageType.File,
      num_replicas: plan.replicas,
      retention: RetentionPolicy.Interest,
      discard: DiscardPolicy.New,
      max_bytes: plan.streamBytesMax,
      max_msgs: -1,
      max_age: 0,
      max_msg_size: 8 * 1024 * 1024,
      duplicate_window: nanos(duplicateWindowMs),
      allow_rollup_hdrs: false,
      deny_delete: true,
      deny_purge: false,
    };
  }

  /** Create (or check) every shard stream and every node's consumer on it; idempotent. */
  async ensureStreamsAndConsumers(plan: StreamPlan): Promise<void> {
    await Promise.all(Array.from({ length: plan.shards }, (_, shard) => this.ensureShard(plan, shard)));
    const names: string[] = [];
    for await (const n of this.jsm.streams.names()) names.push(n);
    const prefix = `burrow_${plan.cluster}_`;
    const extra = names.filter((n) => n.startsWith(prefix) && Number(n.slice(prefix.length)) >= plan.shards);
    if (extra.length > 0) {
      throw new Error(`NATS has streams ${extra.join(', ')} beyond cluster.shards = ${plan.shards}: the shard count `
        + 'must not change on a running cluster (set cluster.shards back, or start a new cluster name)');
    }
  }

  private async ensureShard(plan: StreamPlan, shard: number): Promise<void> {
    const cfg = this.streamConfig(plan, shard);
    try {
      await this.jsm.streams.add(cfg);
    } catch (err) {
      // Already there with another config (e.g. a different size bound): adopt it after checking.
      const info = await this.jsm.streams.info(cfg.name).catch(() => null);
      if (!info) throw err;
      if (info.config.subjects?.join() !== cfg.subjects?.join()) {
        throw new Error(`stream ${cfg.name} exists with subjects ${info.config.subjects?.join()} (expected ${cfg.subjects?.join()})`);
      }
      if (info.config.retention !== cfg.retention) {
        throw new Error(`stream ${cfg.name} exists with retention ${info.config.retention} (expected ${cfg.retention})`);
      }
      if (info.config.num_replicas !== cfg.num_replicas || info.config.max_bytes !== cfg.max_bytes) {
        this.log.warn('stream config differs from cluster.toml; updating', {
          stream: cfg.name, replicas: info.config.num_replicas, want: cfg.num_replicas,
        });
        await this.jsm.streams.update(cfg.name, { ...info.config, num_replicas: cfg.num_replicas, max_bytes: cfg.max_bytes });
      }
    }
    await Promise.all(plan.nodeIds.map((id) => this.jsm.consumers.add(cfg.name, {
      durable_name: consumerName(id),
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.All,
      replay_policy: ReplayPolicy.Instant,
      ack_wait: nanos(consumerAckWaitMs),
      max_deliver: -1,
      max_ack_pending: consumerAckPendingMax,
      max_waiting: 512,
    }).catch(async (err) => {
      const existing = await this.jsm.consumers.info(cfg.name, consumerName(id)).catch(() => null);
      if (!existing) throw err;
    })));
  }

  async close(): Promise<void> {
    try {
      await this.nc.drain();
    } catch {
      await this.nc.close().catch(() => {});
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
