import { connect, nanos, type ConnectionOptions, type NatsConnection } from '@nats-io/transport-node';
import {
  JetStreamApiCodes, JetStreamApiError, DiscardPolicy, jetstream, jetstreamManager, RetentionPolicy, StorageType,
  type JetStreamClient, type JetStreamManager, type StreamConfig,
} from '@nats-io/jetstream';
import { legacyStreamSubjects, schemaStreamName, schemaStreamSubjects, shardOfStream, shardStreamSubjects, streamName } from '../shard/shard-router.ts';
import { errorMessage, StartupError } from '../util/errors.ts';
import type { Logger } from '../util/log.ts';

export interface StreamPlan {
  readonly cluster: string;
  readonly shards: number;
  readonly replicas: number;
  readonly streamBytesMax: number;
  readonly streamAgeMaxS: number;
  /** The config file (for error messages). */
  readonly configFile: string;
}

export const duplicateWindowMs = 120_000;
/** The schema stream's size bound. */
const schemaStreamBytesMax = 256 * 1024 * 1024;
/** How long one attempt to create the streams and consumers may take before the caller retries it. */
const ensureTimeoutMs = 60_000;

/** A setup problem that retrying cannot fix (e.g. a stream with another layout): the node stops, exit code 2. */
export class FatalSetupError extends StartupError {
  override name = 'FatalSetupError';
}

/** The shard count a stream was created for, from its description ("… shard 3 of 16"). */
export function shardsOfDescription(description: string | undefined): number | null {
  const m = /shard \d+ of (\d+)$/.exec(description ?? '');
  return m ? Number(m[1]) : null;
}

/**
 * The node's NATS connection and the JetStream objects burrow uses: one stream per shard (file
 * storage, R = min(replicas, nodes), limits retention: messages are kept by age and size, whoever
 * has read them, the oldest dropped first). No consumer belongs to the cluster: each node reads
 * with in-memory ordered consumers from the positions it stores in its own SQLite file
 * (inbound.ts), so a node that is down or gone holds nothing back.
 */
export class NatsLink {
  private constructor(readonly nc: NatsConnection, readonly js: JetStreamClient, readonly jsm: JetStreamManager,
    private readonly probe: JetStreamManager, private readonly admin: JetStreamManager, private readonly log: Logger) {}

  static async connect(servers: readonly string[], name: string, log: Logger, auth: Pick<ConnectionOptions, 'authenticator' | 'tls'> = {}): Promise<NatsLink> {
    const nc = await connect({
      ...auth,
      servers: [...servers],
      name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
      waitOnFirstConnect: true,
      timeout: 5000,
      pingInterval: 10_000,
      // No stack trace captured per request (every publish is one): a measurable CPU cost.
      noAsyncTraces: true,
    });
    const jsm = await jetstreamManager(nc, { timeout: 10_000, checkAPI: false });
    // A short timeout for the readiness probe: while the meta leader is being elected the request
    // gets no answer, and a long timeout would delay readiness by that much.
    const probe = await jetstreamManager(nc, { timeout: 1000, checkAPI: false });
    const admin = await jetstreamManager(nc, { timeout: 2000, checkAPI: false });
    const js = jetstream(nc, { timeout: 10_000 });
    const link = new NatsLink(nc, js, jsm, probe, admin, log);
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
      description: `burrow cluster ${plan.cluster}: shard ${shard} of ${plan.shards}`,
      subjects: shardStreamSubjects(plan.cluster, shard),
      storage: StorageType.File,
      num_replicas: plan.replicas,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_bytes: plan.streamBytesMax,
      max_msgs: -1,
      max_age: nanos(plan.streamAgeMaxS * 1000),
      max_msg_size: 8 * 1024 * 1024,
      // JetStream refuses a duplicate window longer than the age bound.
      duplicate_window: nanos(Math.min(duplicateWindowMs, plan.streamAgeMaxS * 1000)),
      allow_rollup_hdrs: false,
      deny_delete: true,
      deny_purge: false,
    };
  }

  /**
   * The schema stream (schema replication): one R stream for every node's schema entries, in one
   * order. Kept by size only (entries are small and rare; a node behind it restores a snapshot,
   * which carries the schema and its position). Created like the shard streams (check first).
   */
  async ensureSchemaStream(plan: StreamPlan, selfIndex: number): Promise<void> {
    const cfg: Partial<StreamConfig> & { name: string } = {
      name: schemaStreamName(plan.cluster),
      description: `burrow cluster ${plan.cluster}: schema entries`,
      subjects: schemaStreamSubjects(plan.cluster),
      storage: StorageType.File,
      num_replicas: plan.replicas,
      retention: RetentionPolicy.Limits,
      discard: DiscardPolicy.Old,
      max_bytes: schemaStreamBytesMax,
      max_msgs: -1,
      max_age: 0,
      max_msg_size: 8 * 1024 * 1024,
      duplicate_window: nanos(duplicateWindowMs),
      allow_rollup_hdrs: false,
      deny_delete: true,
      deny_purge: false,
    };
    const createAfterMs = Date.now() + selfIndex * 1500;
    await this.retry(`stream ${cfg.name}`, Date.now() + ensureTimeoutMs, async () => {
      let info = await this.streamInfo(cfg.name);
      while (!info && Date.now() < createAfterMs) {
        await sleep(100);
        info = await this.streamInfo(cfg.name);
      }
      if (!info) {
        await this.admin.streams.add(cfg);
        return;
      }
      const subjects = this.checkSubjects(info.config, cfg, legacyStreamSubjects(plan.cluster, 'schema'));
      if (info.config.num_replicas < (cfg.num_replicas ?? 1) || subjects) {
        await this.admin.streams.update(cfg.name, { ...info.config, num_replicas: Math.max(info.config.num_replicas, cfg.num_replicas ?? 1), subjects: cfg.subjects });
      }
    });
  }

  /**
   * True when the stream still has the subjects of a burrow before per-publisher subjects (it is
   * moved to the new ones; what it stores stays readable); a fatal setup error for any other difference.
   */
  private checkSubjects(have: StreamConfig, want: Partial<StreamConfig> & { name: string }, legacy: string[]): boolean {
    const had = have.subjects?.join() ?? '';
    if (had === want.subjects?.join()) return false;
    if (had === legacy.join()) {
      this.log.info('stream moves to per-publisher subjects', { stream: want.name, from: had, to: want.subjects?.join() });
      return true;
    }
    throw new FatalSetupError(`stream ${want.name} exists with subjects ${had} (expected ${want.subjects?.join()})`);
  }

  /** Create (or check) every shard stream; idempotent. */
  async ensureStreams(plan: StreamPlan, selfIndex: number): Promise<void> {
    const t0 = Date.now();
    await this.retry('shard count check', t0 + ensureTimeoutMs, () => this.checkShardCount(plan));
    // Stagger: concurrent creates of the same stream from several nodes can go unanswered on
    // nats-server 2.9, so the first node of the config creates and the others mostly find the
    // work done; each takes over after its delay if the earlier ones are not up.
    const staggerMs = selfIndex * 1500;
    await Promise.all(Array.from({ length: plan.shards }, (_, shard) => this.ensureShard(plan, shard, t0 + staggerMs)));
    this.log.info('streams in place', { shards: plan.shards, ms: Date.now() - t0 });
  }

  /**
   * Before anything is created: a node whose cluster.shards differs from the running cluster's
   * stops here (exit 2) instead of adding streams the others would then refuse to start with.
   */
  private async checkShardCount(plan: StreamPlan): Promise<void> {
    const names: string[] = [];
    for await (const n of this.jsm.streams.names()) names.push(n);
    const shards = names.map((n) => shardOfStream(plan.cluster, n)).filter((s) => s >= 0);
    const extra = names.filter((n) => shardOfStream(plan.cluster, n) >= plan.shards);
    if (extra.length > 0) {
      throw new FatalSetupError(`${plan.configFile}: cluster.shards = ${plan.shards}, but the running cluster "${plan.cluster}" has streams `
        + `${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', …' : ''} beyond it: the shard count cannot change on a running cluster `
        + '(set cluster.shards back, or start a new cluster name)');
    }
    if (shards.length === 0) return;
    const name = streamName(plan.cluster, shards[0]!);
    const had = shardsOfDescription((await this.streamInfo(name))?.config.description);
    if (had !== null && had !== plan.shards) {
      throw new FatalSetupError(`${plan.configFile}: cluster.shards = ${plan.shards}, but the running cluster "${plan.cluster}" has ${had} shards `
        + `(stream ${name}): the shard count cannot change on a running cluster; set cluster.shards = ${had} (or start a new cluster name)`);
    }
  }

  /**
   * Check first, create only what is missing, with short timeouts and retries: when several nodes
   * create the same stream at once, nats-server 2.9 may leave some of the requests unanswered.
   */
  private async ensureShard(plan: StreamPlan, shard: number, createAfterMs: number): Promise<void> {
    const cfg = this.streamConfig(plan, shard);
    const deadline = Date.now() + ensureTimeoutMs;
    const waitTurn = async () => {
      while (Date.now() < createAfterMs) await sleep(Math.min(100, createAfterMs - Date.now()));
    };
    await this.retry(`stream ${cfg.name}`, deadline, async () => {
      let info = await this.streamInfo(cfg.name);
      if (!info && Date.now() < createAfterMs) {
        await waitTurn();
        info = await this.streamInfo(cfg.name);
      }
      if (!info) {
        await this.admin.streams.add(cfg);
        return;
      }
      const had = shardsOfDescription(info.config.description);
      if (had !== null && had !== plan.shards) {
        throw new FatalSetupError(`${plan.configFile}: cluster.shards = ${plan.shards}, but the running cluster "${plan.cluster}" has ${had} shards `
          + `(stream ${cfg.name}): the shard count cannot change on a running cluster; set cluster.shards = ${had} (or start a new cluster name)`);
      }
      const subjects = this.checkSubjects(info.config, cfg, legacyStreamSubjects(plan.cluster, shard));
      if (info.config.retention !== cfg.retention) {
        throw new FatalSetupError(`stream ${cfg.name} exists with retention "${info.config.retention}" (expected "${cfg.retention}"): `
          + `it was created by an older burrow and JetStream cannot convert it: stop the nodes, delete the streams burrow_${plan.cluster}_* `
          + '(the replicas keep their data; nodes publish what they have not sent yet) and start again');
      }
      // Replicas are raised, never lowered: a member taken out for a while (remove, re-add) must
      // not scale every stream down and up again — nats-server 2.9 can lose a stream's quorum for
      // minutes doing that (chaos seed 404). An R3 stream on two servers keeps working on both.
      const replicas = Math.max(info.config.num_replicas, cfg.num_replicas ?? 1);
      if (info.config.num_replicas !== replicas || info.config.max_bytes !== cfg.max_bytes || info.config.max_age !== cfg.max_age
        || info.config.discard !== cfg.discard || subjects) {
        this.log.warn('stream config differs from cluster.toml; updating', {
          stream: cfg.name, replicas: info.config.num_replicas, want: replicas, maxBytes: cfg.max_bytes, maxAgeS: plan.streamAgeMaxS,
        });
        await this.admin.streams.update(cfg.name, {
          ...info.config, num_replicas: replicas, max_bytes: cfg.max_bytes, max_age: cfg.max_age, discard: cfg.discard, subjects: cfg.subjects,
        });
      }
    });
  }

  private async streamInfo(name: string) {
    return this.admin.streams.info(name).catch((err) => {
      if (err instanceof JetStreamApiError && err.code === JetStreamApiCodes.StreamNotFound) return null;
      throw err;
    });
  }

  private async retry(what: string, deadlineMs: number, fn: () => Promise<void>): Promise<void> {
    let delay = 100;
    for (let attempt = 1; ; attempt++) {
      try {
        await fn();
        return;
      } catch (err) {
        if (err instanceof FatalSetupError || Date.now() > deadlineMs) throw err;
        this.log.debug('JetStream setup step failed; retrying', { what, attempt, error: errorMessage(err) });
        await sleep(delay * (0.5 + Math.random()));
        delay = Math.min(delay * 2, 2000);
      }
    }
  }

  /**
   * Ask the stream's leader to step down (a new election). Used when a shard's publishes have
   * failed for a long time while the connection is up: nats-server 2.9's Raft recovery after hard
   * kills can leave a stream without quorum while its followers retry catch-up.
   */
  async stepDownStreamLeader(stream: string): Promise<string> {
    const r = await this.nc.request(`$JS.API.STREAM.LEADER.STEPDOWN.${stream}`, new Uint8Array(0), { timeout: 3000 });
    return new TextDecoder().decode(r.data);
  }

  /** A stream's sequences, its leader and replicas as JetStream reports them (burrow status --shards). */
  async streamView(stream: string): Promise<{ firstSeq: number; lastSeq: number; leader: string | null; replicas: { name: string; current: boolean; lag: number }[] }> {
    const info = await this.admin.streams.info(stream);
    return {
      firstSeq: info.state.first_seq, lastSeq: info.state.last_seq, leader: info.cluster?.leader ?? null,
      replicas: (info.cluster?.replicas ?? []).map((r) => ({ name: r.name, current: r.current, lag: r.lag ?? 0 })),
    };
  }

  /** A stream's first and last sequence as its leader reports them (short timeout: no answer means no leader). */
  async streamState(stream: string): Promise<{ firstSeq: number; lastSeq: number }> {
    const info = await this.admin.streams.info(stream);
    return { firstSeq: info.state.first_seq, lastSeq: info.state.last_seq };
  }

  /**
   * Call back when JetStream elects a leader for one of the cluster's shard streams (the server's
   * LEADER_ELECTED advisory), so waiting publishes and reads move to the new leader at once
   * instead of after timeouts. Returns the unsubscribe.
   */
  onStreamLeaderElected(cluster: string, call: (shard: number) => void): () => void {
    // $JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.<stream>: token 5 is the stream.
    const sub = this.nc.subscribe('$JS.EVENT.ADVISORY.STREAM.LEADER_ELECTED.*', {
      callback: (err, m) => {
        const shard = err ? -1 : shardOfStream(cluster, m.subject.split('.')[5]);
        if (shard >= 0) call(shard);
      },
    });
    return () => sub.unsubscribe();
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
