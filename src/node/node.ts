import type http from 'node:http';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, watch, writeFileSync, writeSync, type FSWatcher } from 'node:fs';
import path from 'node:path';
import { startHttp } from '../api/http-server.ts';
import type { Applier } from '../apply/applier.ts';
import type { Capture } from '../capture/capture.ts';
import type { ChangeStamper } from '../capture/change-stamper.ts';
import type { TableChecksum } from '../capture/checksum.ts';
import type { SqliteOutbox } from '../capture/outbox.ts';
import { SystemClock, type Clock } from '../clock/clock.ts';
import { hlcFormat, hlcMs, hlcPack, type Hlc } from '../clock/hlc.ts';
import { decodeBatch, encodeBatch } from '../codec/batch-codec.ts';
import { loadConfig, nodeById, type Config, type NodeConfig } from '../config/config.ts';
import { membershipDiff, missingKeys, reloadProblem } from '../config/reload.ts';
import { noSeal, Opener, Sealer, signedSeal, unsealUnverified, type Seal } from '../security/envelope.ts';
import { keyFiles, publicKeyOf, readSeed } from '../security/keys.ts';
import { natsClientOptions } from '../security/nats-auth.ts';
import { Metrics } from '../api/metrics.ts';
import { firstHlcOfMsgId } from '../codec/batch-codec.ts';
import { burrowVersion } from '../util/version.ts';
import { NatsSupervisor, pidAlive } from '../nats/nats-supervisor.ts';
import { Inbound, type MessageSink } from '../replication/inbound.ts';
import { ShardDoctor } from './doctor.ts';
import { Membership } from './membership.ts';
import type { GapTracker } from '../replication/gaps.ts';
import { GapRepair } from '../replication/repair.ts';
import { FatalSetupError, NatsLink, sleep } from '../replication/nats-link.ts';
import { Publisher } from '../replication/publisher.ts';
import { SchemaPublisher } from '../replication/schema-publisher.ts';
import { SchemaLossWatch } from '../replication/schema-loss.ts';
import { schemaStreamName, schemaSubject, shardSubject } from '../shard/shard-router.ts';
import { localObjects } from '../capture/schema-capture.ts';
import { encodeSchemaEntry, schemaEntryVersion } from '../codec/schema-codec.ts';
import { createHash } from 'node:crypto';
import type { Database } from '../sqlite/database.ts';
import type { MetaStore } from '../store/meta-store.ts';
import { Replica } from './replica.ts';
import { lostBatchesMark, SnapshotService, type SnapshotProgress, type StreamBounds } from './snapshots.ts';
import { JetStreamPeers } from './peers.ts';
import { streamName } from '../shard/shard-router.ts';
import { errorMessage, StartupError, type BurrowError } from '../util/errors.ts';
import { createLogger, type Logger } from '../util/log.ts';
import { sabotage, sabotageActive } from '../util/sabotage.ts';

export interface NodeOptions {
  readonly config: Config;
  readonly nodeId: string;
  readonly clock?: Clock;
  readonly log?: Logger;
}

/** The shard doctor (doctor.ts) looks every interval; a shard stuck this long gets nudged, at most once per nudge interval. */
const shardDoctorIntervalMs = 5_000;
/** How long stop waits for the connect loop to notice (then it closes NATS under it). */
const connectStopWaitMs = 3_000;
/** A node whose server has not given JetStream for this long while connecting restarts that server. */
const jetStreamMissingRestartMs = 60_000;
const shardStuckMs = 30_000;
const shardNudgeIntervalMs = 60_000;

/** Least time between two restarts of the embedded nats-server by the doctor. */
const natsRestartIntervalMs = 10 * 60_000;
/** Most batch numbers per origin kept as applied beyond a hole (`__burrow_received_above`). */
const receivedAboveMax = 100_000;
/** Heartbeat period; a batch number missing this long without progress is fetched from its origin (repair.ts). */
const repairHeartbeatMs = 2_000;
/** A restore while running that failed is retried after at most this long (backoff from 2 s). */
const restoreRetryMaxMs = 30_000;
/** After a restore while running succeeded, the next waits this long (what it left behind is settled first). */
const restoreSpacingMs = 30_000;
const repairGapMs = 20_000;
/** Bounded history: how often tombstones are collected, and at most how many per pass (one transaction). */
const historyIntervalMs = envInt('BURROW_HISTORY_INTERVAL_MS') ?? 60_000;
const historyCollectMax = 20_000;
/**
 * The sent log (outbox.ts) keeps published batches as long as the streams keep messages, at most
 * this many, and as many bytes as the streams hold together, within [sentBytesMin, sentBytesMax]:
 * a live reader that fell behind a small stream bound still finds what it missed at the origin.
 */
const sentCountMax = 200_000;
const sentBytesMin = 64 * 1024 * 1024;
const sentBytesMax = 256 * 1024 * 1024;

/**
 * A shard whose publishes fail this long sends its batches through another shard's stream
 * (publisher.ts): a stream whose leader died takes JetStream 4–9 s to re-elect one, so its
 * changes go through a live stream after the first publish timeout instead.
 */
const shardDetourAfterMs = 2_000;

/** How often the tailer kicks the publisher even without local commits. */
const publisherKickIntervalMs = 500;
/** No commit by another connection for this long: the node is idle (watches the WAL, polls slowly). */
const idleAfterMs = 1_000;
/** Idle poll interval: a fallback only, the WAL watch wakes the node at once. */
const idlePollMs = 50;

/** Node id → public signing key of every member that has one. */
function memberKeys(config: Config): Map<string, string> {
  return new Map(config.nodes.filter((n) => n.publicKey !== null).map((n) => [n.id, n.publicKey!]));
}

/** A positive integer from the environment (tests and tuning), or null. */
function envInt(name: string): number | null {
  const v = Number(process.env[name]);
  return Number.isInteger(v) && v >= 1 ? v : null;
}

export type Phase = 'starting' | 'connecting' | 'running' | 'stopping' | 'stopped';

/**
 * Composition root of one burrow node: opens the database, installs capture, starts (or adopts)
 * the embedded nats-server, creates streams and consumers, and runs three loops — the tailer
 * (local commits → stamped outbox batches), the publisher (outbox → JetStream) and the inbound
 * consumers (JetStream → one apply transaction per group of messages).
 */
export class BurrowNode {
  private phase: Phase = 'starting';
  private readonly startedAtMs = Date.now();
  private readonly log: Logger;
  private readonly node: NodeConfig;
  private replica!: Replica;
  private db!: Database;
  private hlc!: Hlc;
  private capture!: Capture;
  private stamper!: ChangeStamper;
  private stopLeaderWatch: (() => void) | null = null;
  private applier!: Applier;
  private outbox!: SqliteOutbox;
  private httpServer: http.Server | null = null;
  private supervisor: NatsSupervisor | null = null;
  private link: NatsLink | null = null;
  private publisher: Publisher | null = null;
  private inbound: Inbound | null = null;
  /** Reads the schema stream (one "shard") and folds its entries. */
  private schemaInbound: Inbound | null = null;
  private schemaPublisher: SchemaPublisher | null = null;
  private schemaLoss: SchemaLossWatch | null = null;
  private tailTimer: NodeJS.Timeout | null = null;
  private connectTask: Promise<void> | null = null;
  private logBacklog = true;
  private schemaDirty = false;
  private lastKickMs = 0;
  private doctorTimer: NodeJS.Timeout | null = null;
  private doctor: ShardDoctor | null = null;
  private schemaDoctor: ShardDoctor | null = null;
  private gaps!: GapTracker;
  private repair: GapRepair | null = null;
  private repairTimer: NodeJS.Timeout | null = null;
  private lastSentPruneMs = 0;
  /** Whose messages are accepted: members and, for history_s, former members (node/membership.ts). */
  private membership!: Membership;
  private reloads: { count: number; last: { atMs: number; ok: boolean; message: string } | null } = { count: 0, last: null };
  private snapshots!: SnapshotService;
  private snapshotTimer: NodeJS.Timeout | null = null;
  /** Failed restore attempts at start (after a few, a cluster with its whole history in the streams reads them instead). */
  private restoreFailures = 0;
  /** A restore asked for by `burrow restore` is running (the node is not ready meanwhile). */
  private forcedRestore: Promise<unknown> | null = null;
  /** A restore the running node needs (fell past retention, batches lost): retried with backoff until one succeeds. */
  private restoreWanted: { reason: string; attempts: number; nextMs: number } | null = null;
  /** When the last restore while running succeeded (the next one waits restoreSpacingMs). */
  private lastAutoRestoreMs = 0;
  /** Embedded servers only: peer removal of members taken out of cluster.toml, rejoin after one's own. */
  private peers: JetStreamPeers | null = null;
  private lastHistoryMs = 0;
  private lastNatsRestartMs = 0;
  private readonly historyStats = { collected: 0 };
  private lastError: { message: string; atMs: number } | null = null;
  /** Consecutive failed tail passes (backoff and log rate). */
  private tailFailures = 0;
  private lastWaitingRetryMs = 0;
  private fatalError: ((err: BurrowError) => void) | null = null;
  /** Settles when the node hits a problem it cannot retry away (e.g. a shard count that differs from the running cluster). */
  readonly fatal: Promise<BurrowError> = new Promise((resolve) => {
    this.fatalError = resolve;
  });
  private localStats = { polls: 0, stampPasses: 0, changesStamped: 0, logRowsStamped: 0, schemaRefreshes: 0, idleWakeups: 0 };
  /** Last time another connection committed (or the log had a backlog): polling stays fast for a while after. */
  private lastActiveMs = Date.now();
  /** While idle: an inotify watch on the WAL file wakes the tail at the next commit (polling slows down). */
  private walWatcher: FSWatcher | null = null;
  /** fs.watch failed here (no inotify, odd file system): stay on fast polling until this time. */
  private walWatchRetryMs = 0;
  private readonly lockFile: string;
  private metrics!: Metrics;
  /** Commit time (origin HLC) of the newest remote batch applied here: how far behind a lagging node is. */
  private lastAppliedCommitMs = 0;
  /** Why the process cannot go on (an uncaught exception): /healthz fails until it exits. */
  private brokenReason: string | null = null;
  /** Signs what this node sends and verifies what it receives ([security] sign), or passes both through. */
  private seal: Seal = noSeal;
  private opener: Opener | null = null;
  /** config replication.poll_interval_ms, or BURROW_POLL_INTERVAL_MS for this process (tests, tuning). */
  private readonly pollIntervalMs: number;

  private constructor(private config: Config, nodeId: string, private readonly clock: Clock, log: Logger | undefined) {
    this.node = nodeById(config, nodeId);
    this.log = log ?? createLogger(this.node.id);
    this.lockFile = path.join(this.node.dataDir, 'node.pid');
    this.pollIntervalMs = envInt('BURROW_POLL_INTERVAL_MS') ?? config.replication.pollIntervalMs;
  }

  static async start(opts: NodeOptions): Promise<BurrowNode> {
    const offset = Number(process.env.BURROW_CLOCK_OFFSET_MS ?? 0);
    const n = new BurrowNode(opts.config, opts.nodeId, opts.clock ?? new SystemClock(Number.isFinite(offset) ? offset : 0), opts.log);
    try {
      await n.open();
    } catch (err) {
      await n.stop().catch(() => {});
      throw err;
    }
    return n;
  }

  private async open(): Promise<void> {
    const { config, node } = this;
    mkdirSync(node.dataDir, { recursive: true, mode: 0o700 });
    this.takeLock();
    this.setUpSigning();
    const broken = sabotageActive();
    if (broken.length > 0) this.log.error('TEST-ONLY SABOTAGE is on: this node is deliberately broken (BURROW_TEST_SABOTAGE)', { sabotage: broken.join(',') });
    this.replica = await Replica.open({
      file: node.db, sqlite: config.sqlite, nodeId: node.id, clusterName: config.cluster.name, shards: config.cluster.shards,
      members: config.nodes.map((n) => n.id), hlcSkewMsMax: config.cluster.hlcSkewMsMax, limits: config.replication,
      clock: this.clock, log: this.log.child('replica'), check: (meta) => this.checkMeta(meta), replicateSchema: true,
    });
    ({ db: this.db, hlc: this.hlc, capture: this.capture, stamper: this.stamper, applier: this.applier, outbox: this.outbox, gaps: this.gaps } = this.replica);
    this.db.onTrouble = (t, ended) => {
      if (t) this.log.warn(t.kind === 'busy' ? 'database busy: another connection holds the write lock; the node waits and retries'
        : 'database write failed (disk full or I/O error); everything is kept, the node retries', { file: node.db });
      if (ended) this.log.info(`database writable again after ${Date.now() - ended.sinceMs} ms`, { kind: ended.kind, failedWrites: ended.errors });
    };
    this.membership = new Membership(this.replica.meta, config.cluster.historyS * 1000);
    this.takeMembers(config);
    this.snapshots = new SnapshotService(config, node, this.replica, this.log.child('snapshots'),
      () => {
        // Clocks current and positions of own batches saved: the copy's positions are as high as they can be.
        while (this.applier.stampLocal().logRows > 0) { /* stamp the whole log */ }
        this.applier.savePositions();
      },
      () => this.ready());
    this.metrics = new Metrics(node.id, burrowVersion(), () => this.status());
    this.httpServer = await startHttp(node.http, {
      metrics: () => this.metrics.render(),
      status: () => this.status(),
      ready: () => this.ready(),
      checksum: async () => ({ node: node.id, tables: await this.checksum() }),
      snapshot: (progress) => this.snapshots.take(progress),
      snapshots: () => this.snapshots.list(),
      restore: (name, progress) => this.restoreNow(name, progress),
      schema: () => this.schemaReport(),
      migrate: (sql) => this.migrate(sql),
      broken: () => this.brokenReason,
      inspect: (kind, limit) => this.inspect(kind, limit),
      shards: () => this.shardsView(),
      retryDead: (ids) => this.retryDead(ids),
      purgeDead: (ids) => this.purgeDead(ids),
    }).catch((err: NodeJS.ErrnoException) => {
      throw new StartupError(`cannot listen on ${node.http.host}:${node.http.port} (node ${node.id} http in ${config.file}): ${err.code ?? err.message}`);
    });
    this.scheduleTail(0);
    if (config.nats.urls === null) {
      this.supervisor = new NatsSupervisor(config, node, this.log.child('nats'));
      await this.supervisor.start();
      // Before JetStream is used: a server removed earlier must rejoin as a new peer first.
      this.peers = new JetStreamPeers(this.supervisor, () => Math.max(0, this.config.nodes.findIndex((n) => n.id === this.node.id)), this.log.child('peers'));
      this.peers.start();
    }
    this.phase = 'connecting';
    this.connectTask = this.connectLoop();
  }

  /** `burrow status --shards`: per shard this node's position and lag, and the stream as JetStream sees it. */
  async shardsView(): Promise<unknown> {
    const link = this.link;
    const c = this.config.cluster;
    const shards = await Promise.all(Array.from({ length: c.shards }, async (_, shard) => {
      const pos = this.inbound?.positions[shard];
      const base = { shard, appliedSeq: pos?.appliedSeq ?? 0, lagMessages: this.inbound?.lagOf(shard) ?? 0 };
      if (!link) return { ...base, stream: null, error: 'not connected' };
      try {
        return { ...base, stream: await link.streamView(streamName(c.name, shard)) };
      } catch (err) {
        return { ...base, stream: null, error: errorMessage(err) };
      }
    }));
    return { node: this.node.id, shards };
  }

  /** `burrow dead|conflicts|waiting`: this node's rows, newest (waiting: oldest) first. */
  inspect(kind: 'dead' | 'conflicts' | 'waiting', limit: number): unknown {
    if (!this.db.conn.open) throw new Error(`node ${this.node.id} is ${this.phase}`);
    const rows = kind === 'dead' ? this.replica.quarantine.listDead(limit) : kind === 'conflicts' ? this.replica.quarantine.listConflicts(limit) : this.applier.waiting.list(limit);
    const total = kind === 'dead' ? this.replica.quarantine.deadCount() : kind === 'conflicts' ? this.replica.quarantine.conflictCount() : this.applier.waitingCount();
    return { node: this.node.id, total, rows };
  }

  /**
   * `burrow dead --retry`: dead letters taken out and applied again, as they were received — a
   * whole message rejected on receipt goes through the signature check again; a change that failed
   * to apply goes to the apply path. What fails again is dead-lettered again (a new row).
   */
  retryDead(ids: readonly number[] | 'all'): { retried: number; deadAgain: number; notRetryable: number } {
    if (this.phase !== 'running') throw new Error(`node ${this.node.id} is ${this.phase}, not running`);
    const before = this.replica.quarantine.deadCount();
    const rows = this.db.writeTx(() => this.replica.quarantine.takeDead(ids, 10_000));
    const retryable = rows.filter((r) => r.change !== null);
    // Rows without the message bytes (a local row too large to send) cannot be applied again: kept.
    if (retryable.length < rows.length) {
      this.db.writeTx(() => {
        for (const r of rows) if (r.change === null) this.replica.quarantine.deadLetter({ shard: r.shard, seq: null, origin: null, table: null, hlc: null, reason: r.reason, change: null });
      });
    }
    for (const r of retryable) {
      const data = new Uint8Array(r.change!);
      let shard = r.shard ?? 0;
      try {
        shard = decodeBatch(unsealUnverified(data)).s;
      } catch { /* rejected again below, with the reason */ }
      const msg = { shard, seq: 0, data };
      if (r.reason.startsWith('rejected message:')) this.applyMessages([msg]);
      else this.applier.applyMessages([msg]);
    }
    this.publisher?.kick(this.stamper.takeTouchedShards());
    const after = this.replica.quarantine.deadCount();
    return { retried: retryable.length, deadAgain: after - (before - retryable.length), notRetryable: rows.length - retryable.length };
  }

  purgeDead(ids: readonly number[] | 'all'): { purged: number } {
    if (!this.db.conn.open) throw new Error(`node ${this.node.id} is ${this.phase}`);
    return { purged: this.db.writeTx(() => this.replica.quarantine.purgeDead(ids)) };
  }

  /** The process hit an error it cannot go on from: health fails now; the caller stops and exits non-zero. */
  markBroken(reason: string): void {
    this.brokenReason ??= reason;
  }

  /** [security] sign: this node's key from its data folder, checked against its public_key; the members' keys. */
  private setUpSigning(): void {
    const { config, node } = this;
    const missing = missingKeys(config);
    if (missing) throw new StartupError(missing);
    if (!config.security.sign) return;
    const file = keyFiles(node.dataDir).sign;
    const seed = readSeed(file);
    if (publicKeyOf(seed) !== node.publicKey) {
      throw new StartupError(`${file} is not the key of node ${node.id}: its public key differs from public_key in ${config.file} (run burrow keygen --config FILE --node ${node.id} on this node's machine and put what it prints in the file)`);
    }
    this.opener = new Opener(config.cluster.name, memberKeys(config));
    this.seal = signedSeal(new Sealer(config.cluster.name, node.id, seed), this.opener);
  }

  /**
   * One live process per node id and data folder: the lock file is created exclusively (O_EXCL),
   * so two starts cannot both take it. A lock left by a process that is gone (or is not a burrow
   * node of this id any more: its pid reused) is taken over.
   */
  private takeLock(): void {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        const fd = openSync(this.lockFile, 'wx', 0o600);
        writeSync(fd, `${process.pid}\n`);
        closeSync(fd);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
      const pid = Number((() => {
        try {
          return readFileSync(this.lockFile, 'utf8').trim();
        } catch {
          return '';
        }
      })());
      if (pid > 0 && pid !== process.pid && this.isThisNode(pid)) {
        throw new StartupError(`node ${this.node.id} is already running (pid ${pid}, lock ${this.lockFile}): stop it first`);
      }
      rmSync(this.lockFile, { force: true }); // stale: its process is gone
    }
    throw new StartupError(`could not take the lock ${this.lockFile} (another start of node ${this.node.id} races this one)`);
  }

  /** A live burrow process started for this node id (argv: start … --node <id>). */
  private isThisNode(pid: number): boolean {
    if (!pidAlive(pid)) return false;
    try {
      const argv = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      const at = argv.findIndex((a, i) => (a === '--node' || a === '-n') && argv[i + 1] === this.node.id);
      return at >= 0 && argv.includes('start');
    } catch {
      return false;
    }
  }

  private checkMeta(meta: MetaStore): void {
    const facts: [string, unknown][] = [['node_id', this.node.id], ['cluster', this.config.cluster.name], ['shards', BigInt(this.config.cluster.shards)]];
    for (const [k, want] of facts) {
      const have = meta.get(k);
      if (have === undefined) continue;
      if (have !== want) {
        throw new StartupError(`${this.node.db} belongs to ${k} ${String(have)}, but ${this.config.file} says ${String(want)} for node ${this.node.id}: `
          + 'use the database of this node, or a new empty one');
      }
    }
  }

  /** Connect to NATS, create streams and consumers, start publishing and applying; retried until it works. */
  private async connectLoop(): Promise<void> {
    const servers = this.config.nats.urls ?? [this.supervisor!.clientUrl()];
    let delay = 250;
    /** Since when this node's server has not given JetStream (it restarts that server after a while). */
    let jsMissingSince: number | null = null;
    while (this.phase === 'connecting') {
      // A failed attempt counts from its start: one stream check alone may retry for 60 s.
      const attemptStart = Date.now();
      try {
        if (!this.link) {
          const link = await NatsLink.connect(servers, `burrow-${this.config.cluster.name}-${this.node.id}`, this.log.child('nats'), natsClientOptions(this.config, this.node));
          // Stopped while connecting: stop() has closed what it saw; this connection would keep the process alive.
          if (this.phase !== 'connecting') {
            await link.close().catch(() => {});
            return;
          }
          this.link = link;
        }
        await this.link.waitForJetStream(Date.now() + 10_000, () => this.phase !== 'connecting');
        await this.link.ensureStreams({
          cluster: this.config.cluster.name, shards: this.config.cluster.shards, replicas: this.config.cluster.replicas,
          streamBytesMax: this.config.cluster.streamBytesMax, streamAgeMaxS: this.config.cluster.streamAgeMaxS, configFile: this.config.file,
        }, this.config.nodes.indexOf(this.node));
        await this.link.ensureSchemaStream({
          cluster: this.config.cluster.name, shards: this.config.cluster.shards, replicas: this.config.cluster.replicas,
          streamBytesMax: this.config.cluster.streamBytesMax, streamAgeMaxS: this.config.cluster.streamAgeMaxS, configFile: this.config.file,
        }, this.config.nodes.indexOf(this.node));
        if (this.phase !== 'connecting') return;
        this.snapshots.attach(this.link.nc, this.link.js);
        await this.restoreIfNeeded();
        if (this.phase !== 'connecting') return;
        await this.startSchemaInbound(this.link);
        await this.startInbound(this.link);
        // Stopped meanwhile: stop() waits for this loop, then stops the readers. Nothing below may
        // start (timers created after stop() cleared them would keep the process alive).
        if (this.phase !== 'connecting') return;
        this.startSchemaPublisher(this.link);
        this.publisher = new Publisher(this.link.js, this.outbox, (s) => shardSubject(this.config.cluster.name, s, this.node.id), {
          shards: this.config.cluster.shards, inFlightMax: this.config.replication.publishInFlightMax,
          // A fair share each: shards whose stream leader died hold their slots until the publish
          // times out, and must not be able to take the whole window from the live shards.
          inFlightPerShardMax: Math.max(2, Math.ceil(this.config.replication.publishInFlightMax / this.config.cluster.shards)),
          timeoutMs: this.config.replication.publishTimeoutMs, retryDelayMsMin: 50, retryDelayMsMax: 1000,
          detourAfterMs: shardDetourAfterMs, detourProbeMs: 2000,
          reshard: (payload, shard) => encodeBatch({ ...decodeBatch(payload), s: shard }),
          seal: this.seal.on ? (payload) => this.seal.seal('batch', payload) : undefined,
          onAcked: (b) => this.metrics.observePublished(hlcMs(firstHlcOfMsgId(b.msgId))),
        }, this.log.child('publish'));
        this.publisher.start();
        this.stopLeaderWatch = this.link.onStreamLeaderElected(this.config.cluster.name, (shard) => {
          this.publisher?.leaderElected(shard);
          this.inbound?.streamLeaderElected(shard);
        });
        this.repair = new GapRepair(this.link.nc, this.config.cluster.name, this.node.id, this.replica.members, this.gaps, {
          publishedUpto: () => this.outbox.publishedUpto(),
          sentBatches: (want, bytesMax) => this.outbox.sentBatches(want, bytesMax),
          apply: (msgs) => this.applyMessages(msgs),
          busy: () => (this.inbound?.queued() ?? 0) > 0,
          // The origin no longer has them and the streams did not deliver them: only a snapshot holds their effect now.
          settle: (origin, numbers) => this.giveUpBatches(origin, numbers, `${origin}'s sent log still hold them`),
        }, { heartbeatMs: repairHeartbeatMs, gapMs: envInt('BURROW_REPAIR_GAP_MS') ?? repairGapMs, requestNumbersMax: 500, replyBytesMax: 900 * 1024 }, this.log.child('repair'), this.seal);
        this.repair.start();
        this.repairTimer = setInterval(() => {
          if (this.phase !== 'running') return;
          void this.repair?.tick().catch((err) => this.log.warn('gap repair failed', { error: errorMessage(err) }));
          this.boundReceivedAbove();
          this.restoreIfWanted();
        }, repairHeartbeatMs);
        this.makeDoctor(this.link);
        this.doctorTimer = setInterval(() => {
          if (this.phase !== 'running') return;
          void this.doctor?.tick().catch((err) => this.log.warn('shard doctor failed', { error: errorMessage(err) }));
          void this.schemaDoctor?.tick().catch((err) => this.log.warn('schema stream doctor failed', { error: errorMessage(err) }));
          void this.schemaLoss?.tick().catch((err) => this.log.warn('schema loss watch failed', { error: errorMessage(err) }));
        }, shardDoctorIntervalMs);
        this.phase = 'running';
        this.snapshots.serve();
        this.snapshotTimer = setInterval(() => {
          if (this.phase === 'running' && !this.forcedRestore) void this.snapshots.tick().catch((err) => this.log.warn('periodic snapshot failed', { error: errorMessage(err) }));
        }, Math.min(30_000, Math.max(1000, this.config.snapshot.intervalS * 1000)));
        this.checkMaxPayload(this.link.nc.info?.max_payload);
        this.log.info('replicating', { shards: this.config.cluster.shards, replicas: this.config.cluster.replicas });
        return;
      } catch (err) {
        this.noteError(`connecting to JetStream: ${errorMessage(err)}`);
        if (err instanceof FatalSetupError) {
          this.log.error(err.message);
          this.fatalError?.(err);
          return;
        }
        if (this.inbound) {
          await this.inbound.stop().catch(() => {});
          this.inbound = null;
        }
        if (this.schemaInbound) {
          await this.schemaInbound.stop().catch(() => {});
          this.schemaInbound = null;
        }
        this.log.warn('JetStream not ready; retrying', { error: errorMessage(err), retryInMs: delay });
        // nats-server 2.9.10 can leave a restarted member's JetStream API timing out for minutes
        // while it takes part in the cluster (chaos seed 404, twice: "not available", then plain
        // request timeouts): restart the embedded server (store kept). Restore failures are not its doing.
        if (this.phase === 'connecting' && !errorMessage(err).startsWith('restore:')) {
          jsMissingSince ??= attemptStart;
          if (Date.now() - jsMissingSince >= jetStreamMissingRestartMs) {
            jsMissingSince = null;
            await this.restartEmbeddedNats(`JetStream has not been available for ${jetStreamMissingRestartMs / 1000} s`).catch((e) => this.log.warn('restarting nats-server failed', { error: errorMessage(e) }));
          }
        } else jsMissingSince = null;
        await sleep(delay);
        delay = Math.min(delay * 2, 5000);
      }
    }
  }

  /** The shard streams' reader, from the positions stored in the replica. */
  private async startInbound(link: NatsLink): Promise<void> {
    this.inbound = await this.openInbound(link, this.config.cluster.shards, (msgs) => this.applyMessages(msgs),
      this.config.replication.applyMessagesMax, this.replica.received.positions());
  }

  /** The schema stream, read as one shard from the position folded here; its entries are folded in apply transactions. */
  private async startSchemaInbound(link: NatsLink): Promise<void> {
    this.schemaInbound = await this.openInbound(link, 1, (msgs) => this.applySchemaMessages(msgs), 64,
      new Map([[0, this.replica.schema!.store.position()]]), () => schemaStreamName(this.config.cluster.name));
  }

  /** An Inbound over `shards` streams, started (stopped again if it does not start). */
  private async openInbound(link: NatsLink, shards: number, apply: MessageSink['apply'], applyMessagesMax: number,
    positions: ReadonlyMap<number, number>, streamOf?: (shard: number) => string): Promise<Inbound> {
    const inbound = new Inbound(link.nc, link.js, this.config.cluster.name, shards, { apply }, {
      applyMessagesMax, applyBytesMax: 2 * 1024 * 1024, pullMessagesMax: 256, retryDelayMs: 1000,
    }, this.log.child('inbound'), positions, streamOf);
    try {
      await inbound.start();
    } catch (err) {
      await inbound.stop().catch(() => {});
      throw err;
    }
    return inbound;
  }

  private startSchemaPublisher(link: NatsLink): void {
    if (this.schemaPublisher) return;
    const store = this.replica.schema!.store;
    const c = this.config.cluster.name;
    let numbered = false;
    // Entries published again because the stream lost them go out under new msgIDs (one per lost entry).
    const republished = new Map<number, number>();
    this.schemaPublisher = new SchemaPublisher(link.js, {
      next: () => {
        // This node's own numbers are known once the schema stream is read to its end (a replaced
        // database starts numbering at 1 again): nothing goes out before, and colliding entries
        // are numbered again above what the stream folded for this node (chaos seed 505).
        if (!this.schemaInbound?.ready()) return null;
        if (!numbered) {
          this.db.writeTx(() => {
            const tables = store.renumberUnpublishedAbove(store.folded(this.node.id));
            for (const t of tables) this.applier.restamp(t);
            if (tables.length > 0) this.log.warn('schema entries made before this replica knew its own numbers are numbered again', { tables });
          });
          numbered = true;
        }
        return store.nextToPublish();
      },
      published: (n) => this.db.writeTx(() => store.markPublished(n)),
    }, { subject: schemaSubject(c, this.node.id), msgId: (n, payload) => `${c}.${this.node.id}.schema.${n}.${createHash('sha256').update(payload).digest('hex').slice(0, 16)}${republished.has(n) ? `.r${republished.get(n)}` : ''}`, timeoutMs: this.config.replication.publishTimeoutMs, retryDelayMsMax: 1000,
      seal: this.seal.on ? (payload) => this.seal.seal('schema', payload) : undefined,
      lose: sabotage.loseSchemaEntry ? (n) => n === sabotage.loseSchemaEntry && !republished.has(n) : undefined }, this.log.child('schema'));
    this.schemaPublisher.start();
    this.schemaLoss = new SchemaLossWatch({
      ready: () => this.schemaInbound?.ready() ?? false,
      position: () => store.position(),
      publishedPending: () => store.publishedPending(),
      streamLastSeq: async () => (await link.streamState(schemaStreamName(c))).lastSeq,
      republish: (ns) => {
        this.db.writeTx(() => store.unpublish(ns));
        for (const n of ns) republished.set(n, (republished.get(n) ?? 0) + 1);
        this.schemaPublisher?.kick();
      },
    }, this.log.child('schema'));
  }

  private applySchemaMessages(msgs: readonly { seq: number; data: Uint8Array; origin?: string }[]): { kind: 'applied' }[] {
    try {
      this.applier.applySchema(msgs.map((m) => {
        const r = this.seal.open('schema', m.data);
        if (!r.ok) return { seq: m.seq, data: m.data, refused: r.reason };
        // The publisher (subject; msgID for legacy entries) must be the signer; unsigned, it stands in for one.
        if (m.origin !== undefined && r.signer !== null && m.origin !== r.signer) return { seq: m.seq, data: m.data, refused: `signed by ${r.signer} but published as ${m.origin}` };
        return { seq: m.seq, data: r.payload, signer: r.signer ?? m.origin ?? null };
      }));
    } catch (err) {
      this.noteError(`schema: ${errorMessage(err)}`);
      throw err;
    }
    this.db.schemaChanged(); // our own DDL
    this.lastWaitingRetryMs = 0; // changes waiting for these entries are due
    this.schemaPublisher?.kick();
    this.publisher?.kick(this.stamper.takeTouchedShards());
    return msgs.map(() => ({ kind: 'applied' as const }));
  }

  /** `burrow migrate`: the statements become this node's next schema entry; every node runs them when it folds it. */
  private migrate(sql: string): { origin: string; n: number } {
    if (sql.trim().length === 0) throw new Error('the migration is empty');
    const store = this.replica.schema!.store;
    const n = this.db.writeTx(() => store.queueOwn((num) => encodeSchemaEntry({ v: schemaEntryVersion, o: this.node.id, n: num, ops: [], sql })));
    this.schemaPublisher?.kick();
    this.log.info('migration queued for every node', { n, bytes: Buffer.byteLength(sql) });
    return { origin: this.node.id, n };
  }

  /** GET /schema: every user object with a fingerprint (SHA-256 of its SQL), for `burrow schema`. */
  private schemaReport(): unknown {
    const schema = this.replica.schema!;
    const fp = (sql: string) => createHash('sha256').update(sql).digest('hex').slice(0, 16);
    return {
      node: this.node.id,
      position: schema.store.position(),
      pending: schema.store.pendingCount(),
      conflicts: schema.store.conflictCount(),
      conflictsRecent: schema.store.recentConflicts(20),
      folded: Object.fromEntries(schema.store.foldedAll()),
      objects: localObjects(this.db.conn).map((o) => ({ type: o.type, name: o.name, table: o.tbl, fingerprint: fp(o.sql), sql: o.sql }))
        .sort((a, b) => (a.type + a.name < b.type + b.name ? -1 : 1)),
    };
  }

  private makeDoctor(link: NatsLink): void {
    if (!this.publisher || !this.inbound) return;
    const limits = { stuckMs: shardStuckMs, nudgeIntervalMs: shardNudgeIntervalMs };
    this.doctor = new ShardDoctor(this.config.cluster.name, link, this.publisher, this.inbound, limits, this.log.child('doctor'));
    this.doctor.escalate = (why) => this.restartEmbeddedNats(why);
    // The schema stream can stop delivering (seed 303: one node never got the last entry) or
    // accepting this node's entries (seed 202) the same way.
    const schemaPublishes = { stuckShards: (ms: number) => this.schemaPublisher?.stuckShards(ms) ?? [] };
    this.schemaDoctor = this.schemaInbound
      ? new ShardDoctor(this.config.cluster.name, link, schemaPublishes, this.schemaInbound, limits, this.log.child('schema-doctor'), () => schemaStreamName(this.config.cluster.name))
      : null;
    if (this.schemaDoctor) this.schemaDoctor.escalate = (why) => this.restartEmbeddedNats(why);
  }

  private async streamBounds(link: NatsLink): Promise<StreamBounds[]> {
    const c = this.config.cluster;
    return Promise.all(Array.from({ length: c.shards }, (_, s) => link.streamState(streamName(c.name, s))));
  }

  /**
   * Before the node reads the streams: a new replica, one that fell past retention, or one whose
   * restore was cut short restores from a snapshot (node/snapshots.ts). Failures are retried by the
   * connect loop; after a few, a cluster whose streams still hold everything from the first message
   * and has no snapshot at all is read from the start instead.
   */
  private async restoreIfNeeded(): Promise<void> {
    const streams = await this.streamBounds(this.link!);
    const reason = await this.snapshots.restoreReason(streams);
    if (reason === null) return;
    try {
      await this.snapshots.runRestore(streams, reason);
      this.restoreFailures = 0;
    } catch (err) {
      this.restoreFailures++;
      const wholeHistory = streams.every((s) => s.firstSeq <= 1);
      if (this.restoreFailures >= 3 && wholeHistory && (await this.snapshots.list()).snapshots.length === 0) {
        this.log.warn('no snapshot and no peer to take one: reading every stream from its first message instead', { error: errorMessage(err) });
        this.snapshots.markSynced();
        return;
      }
      if (this.restoreFailures >= 3 && this.snapshots.synced()) {
        // Every peer may be in the same place (all fell behind or were cut short restoring, none
        // ready to take a snapshot): waiting would be for ever. This replica has a history of its
        // own, and a merge cut short raised no positions, so it reads on from where it stands; gap
        // repair gets what the streams dropped from the origins' sent logs, and a batch no origin
        // has any more makes it restore later, from a peer that is running by then.
        this.log.warn('no snapshot can be had (no peer ready to take one): reading on from this replica\'s own positions; gap repair fetches what the streams dropped', { reason, error: errorMessage(err) });
        this.snapshots.markSynced();
        this.restoreFailures = 0;
        return;
      }
      throw new Error(`restore: ${errorMessage(err)}`);
    }
  }

  /** A running node that must restore (fell past retention, unpublishable changes, lost batches). */
  private restoreLater(reason: string): void {
    if (this.restoreWanted || Date.now() - this.lastAutoRestoreMs < restoreSpacingMs) return;
    this.restoreWanted = { reason, attempts: 0, nextMs: 0 };
    this.restoreIfWanted();
  }

  /**
   * Runs the wanted restore when it is due (called again every repair heartbeat). A failure (no
   * peer could take a snapshot yet, the bucket timed out) is retried after 2, 4, 8 … 30 s: a minute
   * of waiting kept a node behind after the cluster had healed (chaos seed 303).
   */
  private restoreIfWanted(): void {
    const w = this.restoreWanted;
    if (!w || this.phase !== 'running' || this.forcedRestore || Date.now() < w.nextMs) return;
    w.attempts++;
    this.log.warn('restoring while running', { reason: w.reason, attempt: w.attempts });
    void this.restoreNow(undefined, () => {}, w.reason).then(() => {
      this.restoreWanted = null;
      this.lastAutoRestoreMs = Date.now();
    }, (err) => {
      const waitMs = Math.min(restoreRetryMaxMs, 2000 * 2 ** Math.min(w.attempts - 1, 10));
      w.nextMs = Date.now() + waitMs;
      this.log.warn(`restore while running failed; retried in ${Math.round(waitMs / 1000)} s`, { error: errorMessage(err), attempt: w.attempts });
    });
  }

  /** `burrow restore`: stop reading the streams, merge a snapshot, read on from the merged positions. */
  private async restoreNow(name: string | undefined, progress: (p: SnapshotProgress) => void, reason = 'asked for (burrow restore)'): Promise<unknown> {
    if (this.phase !== 'running' || !this.link) throw new Error(`node ${this.node.id} is ${this.phase}, not running: start it first (a new or behind node restores by itself)`);
    if (this.forcedRestore) throw new Error(`node ${this.node.id} is already restoring`);
    const link = this.link;
    const run = (async () => {
      await this.inbound?.stop().catch(() => {});
      await this.schemaInbound?.stop().catch(() => {});
      this.inbound = null;
      this.schemaInbound = null;
      this.doctor = null;
      this.schemaDoctor = null;
      try {
        return await this.snapshots.runRestore(await this.streamBounds(link), reason, name, progress);
      } finally {
        await this.startSchemaInbound(link);
        await this.startInbound(link);
        this.makeDoctor(link);
      }
    })();
    this.forcedRestore = run;
    try {
      return await run;
    } finally {
      this.forcedRestore = null;
    }
  }

  /**
   * SIGHUP: re-read the config file. The member list and [snapshot] are taken live (the applier and
   * gap repair accept the new members, the embedded nats-server reloads its routes); a file that does
   * not parse, or changes what needs a restart, is refused with one error line and the running
   * config is kept.
   */
  reload(): { ok: boolean; message: string } {
    const done = (ok: boolean, message: string) => {
      this.reloads = { count: this.reloads.count + (ok ? 1 : 0), last: { atMs: Date.now(), ok, message } };
      if (ok) this.log.info(message);
      else this.log.error(message);
      return { ok, message };
    };
    let next: Config;
    try {
      next = loadConfig(this.config.file);
    } catch (err) {
      return done(false, `config reload failed, keeping the running config: ${errorMessage(err)}`);
    }
    const problem = reloadProblem(this.config, next, this.node.id);
    if (problem) return done(false, `config reload refused, keeping the running config: ${problem}`);
    const { added, removed } = membershipDiff(this.config, next);
    this.config = next;
    this.takeMembers(next);
    this.supervisor?.reload(next);
    this.snapshots.reconfigure(next);
    this.peers?.added(added);
    this.peers?.removed(removed);
    if (added.length > 0) this.retryRefusedNonMembers();
    return done(true, `config reloaded: members ${next.nodes.map((n) => n.id).join(', ')}`
      + `${added.length ? ` (added ${added.join(', ')})` : ''}${removed.length ? ` (removed ${removed.join(', ')})` : ''}`);
  }

  /**
   * A node added to cluster.toml may have sent before this node reloaded (it was started first):
   * its messages were dead-lettered as from a non-member. They are applied now, in LWW like any
   * late change, so the order of SIGHUPs does not leave this replica without them.
   */
  private retryRefusedNonMembers(): void {
    if (this.phase !== 'running') return;
    const ids = this.replica.quarantine.refusedNonMembers(10_000);
    if (ids.length === 0) return;
    const r = this.retryDead(ids);
    this.log.info('messages refused before a member was added, applied again', { retried: r.retried, deadAgain: r.deadAgain });
  }

  /**
   * The member list of `config` (start, reload), with the former members still accepted, to
   * everything that judges an origin: the applier, the schema fold, gap repair, signatures.
   */
  private takeMembers(config: Config): void {
    const now = Date.now();
    this.membership.take(config.nodes, now);
    try {
      this.db.writeTx(() => this.membership.save());
    } catch (err) {
      // Taken in memory all the same; saved again by the minute's pass (boundHistory).
      this.log.warn('member list not saved (database busy or failing); retried within a minute', { error: errorMessage(err) });
    }
    const members = this.replica.members;
    members.clear();
    for (const id of this.membership.accepted(now)) members.add(id);
    this.opener?.setMembers(this.membership.acceptedKeys(now));
  }

  /** An external NATS whose max_payload is below what burrow may publish would refuse those batches for ever. */
  private checkMaxPayload(maxPayload: number | undefined): void {
    const r = this.config.replication;
    const need = Math.max(r.batchBytesMax, r.rowBytesMax) + 64 * 1024;
    if (maxPayload === undefined || maxPayload >= need) return;
    this.log.error(`the NATS server accepts messages up to ${maxPayload} bytes, but replication.batch_bytes_max / row_bytes_max in ${this.config.file} `
      + `allow ${need} (with the envelope): lower them, or raise max_payload on the NATS servers`, { maxPayload, need });
  }

  private applyMessages(msgs: Parameters<Applier['applyMessages']>[0]) {
    this.refreshSchemaIfChanged();
    try {
      const t0 = performance.now();
      const outcomes = this.applier.applyMessages(this.seal.on ? msgs.map((m) => this.opened(m)) : msgs);
      this.metrics.observeApplyTx(performance.now() - t0);
      const now = Date.now();
      for (const ms of this.applier.appliedCommitMs.splice(0)) {
        this.metrics.observeApplied(ms, now);
        if (ms > this.lastAppliedCommitMs) this.lastAppliedCommitMs = ms;
      }
      // The apply transaction stamps pending local changes first: those batches must be published too.
      this.publisher?.kick(this.stamper.takeTouchedShards());
      return outcomes;
    } catch (err) {
      this.noteError(`apply: ${errorMessage(err)}`);
      throw err;
    }
  }

  /**
   * The doctor's last resort for a stream this node's server cannot reach for minutes: restart the
   * embedded nats-server (store kept), at most once per natsRestartIntervalMs. External NATS: only logged.
   */
  private async restartEmbeddedNats(why: string): Promise<void> {
    if (!this.supervisor || Date.now() - this.lastNatsRestartMs < natsRestartIntervalMs) return;
    this.lastNatsRestartMs = Date.now();
    await this.supervisor.restartKeepingStore(why);
  }

  /** Batch numbers of `origin` settled as never to be applied (tracking goes on); a snapshot restore brings their effect. */
  private giveUpBatches(origin: string, numbers: readonly number[], why: string): void {
    this.gaps.begin();
    try {
      this.db.writeTx(() => {
        for (const [i, r] of this.gaps.giveUp(origin, numbers).entries()) this.replica.received.save(origin, numbers[i]!, r);
      });
      this.gaps.commit();
    } catch (err) {
      this.gaps.rollback();
      throw err;
    }
    if (numbers.length > 0) this.restoreLater(`${numbers.length} batch(es) of ${origin} ${lostBatchesMark} ${why}`);
  }

  /**
   * `__burrow_received_above` stays bounded: an origin with more than receivedAboveMax batches
   * applied beyond a hole that repair has not closed gets its lowest holes given up (restore).
   */
  private boundReceivedAbove(): void {
    for (const g of this.gaps.overflowing(receivedAboveMax, 10_000)) {
      this.log.warn('too many batches applied beyond a hole: giving the hole up, a snapshot restore brings what it held', { origin: g.origin, numbers: g.missing.length });
      this.giveUpBatches(g.origin, g.missing, `${g.origin}'s sent log were asked in time (given up: more than ${receivedAboveMax} later batches applied first)`);
    }
  }

  /** A received batch checked before anything else: its payload and signer, or refused with the reason. */
  private opened(m: Parameters<Applier['applyMessages']>[0][number]): Parameters<Applier['applyMessages']>[0][number] {
    const r = this.seal.open('batch', m.data);
    if (!r.ok) return { shard: m.shard, seq: m.seq, data: m.data, refused: r.reason };
    if (m.origin !== undefined && r.signer !== null && m.origin !== r.signer) {
      return { shard: m.shard, seq: m.seq, data: m.data, refused: `signed by ${r.signer} but published as ${m.origin}` };
    }
    return { shard: m.shard, seq: m.seq, data: r.payload, origin: r.signer ?? undefined };
  }

  /**
   * A hint only (PRAGMA schema_version outside a transaction): the schema is re-read inside the
   * write transaction that uses it (Capture.sync, called by every stamp pass).
   */
  private refreshSchemaIfChanged(): void {
    if (!this.db.schemaChanged() && !this.schemaDirty) return;
    this.schemaDirty = true; // stays set until a refresh succeeds
    const gen = this.capture.generation;
    const r = this.db.writeTx(() => this.stamper.syncSchema());
    this.schemaDirty = false;
    this.db.schemaChanged(); // our own trigger DDL bumped it
    if (this.capture.generation !== gen) this.localStats.schemaRefreshes++;
    if (r && r.backfilled > 0) this.logBacklog = true;
    // Changes waiting for a table or column may apply now (the next apply transaction sees the
    // new schema generation and makes them due).
    if (r && this.applier.waitingCount() > 0) this.lastWaitingRetryMs = 0;
  }

  private scheduleTail(ms: number): void {
    if (this.phase === 'stopping' || this.phase === 'stopped') return;
    this.tailTimer = setTimeout(() => this.tail(), ms);
  }

  /**
   * Bounded history, every minute: tombstones older than history_s and than the newest snapshot
   * (which holds their outcome) are collected; changes too old to publish are held and the node
   * restores from a fresh snapshot, which takes them out (node/snapshots.ts).
   */
  private boundHistory(): void {
    this.outbox.holdBelow = this.snapshots.staleBelow();
    const stale = this.outbox.oldestHlc();
    if (stale !== null && stale < this.outbox.holdBelow) this.restoreLater('unpublished changes older than the history horizon allows to publish');
    const newest = this.snapshots.newestSnapshot();
    if (this.phase !== 'running' || Date.now() - this.lastHistoryMs < historyIntervalMs) return;
    this.lastHistoryMs = Date.now();
    // Dead letters and conflicts stay within their bounds (rows, bytes, age) even when nothing is added.
    this.db.writeTx(() => this.replica.quarantine.prune());
    this.applier.expireWaiting();
    this.takeMembers(this.config); // former members past history_s are forgotten
    if (!newest) return;
    const belowMs = Math.min(Date.now() - this.config.cluster.historyS * 1000, newest.atMs);
    if (belowMs <= 0) return;
    const n = this.applier.collectHistory(hlcPack(belowMs, 0), historyCollectMax);
    this.historyStats.collected += n;
    if (n > 0) this.log.info('tombstones collected past the history horizon', { collected: n, horizon: new Date(belowMs).toISOString() });
  }

  /** Poll for local commits; stamp captured changes into the outbox; kick the publisher. */
  private tail(): void {
    this.tailTimer = null;
    this.localStats.polls++;
    let again = false;
    try {
      this.refreshSchemaIfChanged();
      if (this.db.dataChanged() || this.logBacklog) {
        this.markActive();
        const r = this.applier.stampLocal();
        this.logBacklog = r.logRows >= this.config.replication.ingestChangesMax;
        again = this.logBacklog;
        if (r.logRows > 0) {
          this.localStats.stampPasses++;
          this.localStats.changesStamped += r.changes;
          this.localStats.logRowsStamped += r.logRows;
          this.publisher?.kick(this.stamper.takeTouchedShards());
          this.schemaPublisher?.kick();
        }
      }
      if (Date.now() - this.lastSentPruneMs >= 10_000) {
        this.lastSentPruneMs = Date.now();
        // The sent log follows the streams' retention: a batch older than that is gone from them too.
        const c = this.config.cluster;
        this.outbox.pruneSent(c.streamAgeMaxS * 1000, sentCountMax, Math.min(sentBytesMax, Math.max(sentBytesMin, c.shards * c.streamBytesMax)));
        this.boundHistory();
        // Positions of own batches read back without an apply transaction (a restart would read them again).
        this.applier.savePositions();
      }
      if (this.applier.waitingCount() > 0 && Date.now() - this.lastWaitingRetryMs >= 200) {
        this.lastWaitingRetryMs = Date.now();
        const w = this.applier.retryWaiting(false);
        if (w.applied >= 500) again = true;
        this.publisher?.kick(this.stamper.takeTouchedShards());
      }
      this.tailFailures = 0;
    } catch (err) {
      // Busy database, disk full, …: the captured changes stay in the log; back off and retry.
      this.logBacklog = true;
      this.schemaDirty = this.schemaDirty || this.db.schemaChanged();
      this.tailFailures++;
      this.noteError(`capture: ${errorMessage(err)}`);
      if (this.tailFailures === 1 || this.tailFailures % 50 === 0) {
        this.log.warn('stamping local changes failed; retrying', { error: errorMessage(err), failures: this.tailFailures });
      }
      this.scheduleTail(Math.min(1000, Math.max(50, this.pollIntervalMs) * 2 ** Math.min(this.tailFailures - 1, 5)));
      return;
    }
    // Safety net: whatever put batches in the outbox, they get published.
    const now = Date.now();
    if (now - this.lastKickMs > publisherKickIntervalMs) {
      this.lastKickMs = now;
      this.publisher?.kick();
    }
    if (again) this.scheduleTail(0);
    else if (now - this.lastActiveMs < idleAfterMs || this.pollIntervalMs >= idlePollMs) this.scheduleTail(this.pollIntervalMs);
    else if (this.walWatcher) this.scheduleTail(idlePollMs);
    else {
      // One more fast poll once the watch is armed: a commit just before it raised no event.
      this.watchWal();
      this.scheduleTail(this.pollIntervalMs);
    }
  }

  /**
   * Idle: watch the WAL file, whose every commit by any process writes it (inotify), and poll only
   * every idlePollMs as a fallback — an idle node polled 500 times a second (~4 % of a core; ~1.7 %
   * this way). Where the watch cannot be set up, fast polling goes on.
   */
  private watchWal(): void {
    if (this.walWatcher || Date.now() < this.walWatchRetryMs) return;
    const file = `${this.node.db}-wal`;
    try {
      const w = watch(file, { persistent: false }, () => this.wakeFromIdle());
      w.on('error', () => {
        this.closeWalWatch();
        this.walWatchRetryMs = Date.now() + 10_000;
      });
      this.walWatcher = w;
    } catch (err) {
      if (this.walWatchRetryMs === 0) this.log.info('cannot watch the WAL file; polling at the configured interval', { file, error: errorMessage(err) });
      this.walWatchRetryMs = Date.now() + 10_000;
    }
  }

  private wakeFromIdle(): void {
    if (!this.walWatcher) return;
    this.localStats.idleWakeups++;
    this.markActive();
    if (this.tailTimer) {
      clearTimeout(this.tailTimer);
      this.scheduleTail(0);
    }
  }

  private markActive(): void {
    this.lastActiveMs = Date.now();
    this.closeWalWatch();
  }

  private closeWalWatch(): void {
    if (!this.walWatcher) return;
    this.walWatcher.close();
    this.walWatcher = null;
  }

  private noteError(message: string): void {
    this.lastError = { message, atMs: Date.now() };
  }

  ready(): boolean {
    return this.phase === 'running' && (this.inbound?.ready() ?? false) && (this.schemaInbound?.ready() ?? false);
  }

  status(): Record<string, unknown> {
    const counts = this.db.conn.open ? this.outbox.counts() : { batches: 0, changes: 0 };
    const hlc = this.hlc.peek();
    const open = this.db.conn.open;
    const dead = open ? this.replica.quarantine.deadCount() : 0;
    return {
      id: this.node.id,
      cluster: this.config.cluster.name,
      version: burrowVersion(),
      pid: process.pid,
      phase: this.phase,
      ready: this.ready(),
      uptimeMs: Date.now() - this.startedAtMs,
      pending: {
        logRows: this.db.conn.open ? this.outbox.logRows() : 0,
        outboxBatches: counts.batches,
        outboxChanges: counts.changes,
        publishInFlight: this.publisher?.inFlightCount() ?? 0,
        inboundQueued: this.inbound?.queued() ?? 0,
      },
      // Behind the cluster: messages the streams hold that this node has not applied, and (while
      // any) how old the newest change it applied is.
      lag: (() => {
        const messages = (this.inbound?.positions ?? []).reduce((a, _p, shard) => a + (this.inbound?.lagOf(shard) ?? 0), 0);
        return { messages, ms: messages > 0 && this.lastAppliedCommitMs > 0 ? Math.max(0, Date.now() - this.lastAppliedCommitMs) : 0 };
      })(),
      shards: (this.inbound?.positions ?? []).map((p, shard) => ({ shard, appliedSeq: p.appliedSeq, startSeq: p.targetSeq, caughtUp: p.caughtUp, pastRetention: p.pastRetention, lagMessages: this.inbound?.lagOf(shard) ?? 0 })),
      hlc: { value: hlc.toString(), time: hlc === 0n ? 'none yet' : hlcFormat(hlc) },
      nats: {
        embedded: this.supervisor !== null,
        pid: this.supervisor?.current()?.pid ?? null,
        adopted: this.supervisor?.current()?.adopted ?? null,
        restarts: this.supervisor?.restarts ?? 0,
        connected: this.link !== null && !this.link.nc.isClosed(),
        server: this.link?.nc.getServer() ?? null,
      },
      capture: {
        tables: this.capture.tables().map((t) => t.schema.name).sort(),
        skipped: this.capture.skipped(),
        /** Rows this replica holds but cannot replicate (NULL keys or oversized rows written before capture). */
        refusedRows: this.capture.refusedRows(),
        nullKeysSkipped: this.stamper.nullKeysSkipped,
        oversizedRowsSkipped: this.stamper.oversizedRowsSkipped,
        /** No commit by another connection for a second: the WAL is watched, polling is slow. */
        idle: this.walWatcher !== null,
        ...this.localStats,
      },
      publish: this.publisher ? { ...this.publisher.stats, stuckShards: this.publisher.stuckShards(shardStuckMs) } : null,
      apply: { ...this.applier.stats, inbound: this.inbound ? { ...this.inbound.stats, resubscribes: this.inbound.restarts } : null },
      doctor: this.doctor?.stats ?? null,
      schemaDoctor: this.schemaDoctor?.stats ?? null,
      repair: this.repair ? { ...this.repair.stats, origins: this.gaps.snapshot() } : null,
      // What protects this node's traffic, and what failed verification (no secrets here).
      security: {
        sign: this.config.security.sign, auth: this.config.security.auth, tls: this.config.security.tls !== null,
        verified: this.opener?.stats.opened ?? 0, refused: this.opener?.stats.refused ?? 0,
      },
      holds: [...this.applier.holds.entries()].map(([origin, h]) => ({ origin, aheadMs: h.aheadMs, atMs: h.atMs })),
      deadLetters: dead,
      deadLettersRecent: open ? this.replica.quarantine.recentDead(5) : [],
      // Rows of __burrow_dead and __burrow_conflicts removed to keep them within their bounds.
      quarantinePruned: this.replica.quarantine.pruned,
      waiting: open ? { changes: this.applier.waitingCount(), expired: this.applier.waiting.expired, tables: this.applier.waiting.summary(20) } : null,
      conflicts: open ? this.replica.quarantine.conflictCount() : 0,
      unique: this.applier.unique.stats,
      snapshots: this.snapshots.status(),
      schema: open ? this.schemaStatus() : null,
      history: open ? this.historyStatus() : null,
      members: this.config.nodes.map((n) => n.id),
      // Removed from cluster.toml less than history_s ago: their messages still in flight are accepted (node/membership.ts).
      formerMembers: open ? this.membership.former(Date.now()) : [],
      jetstreamPeers: this.peers ? { server: this.supervisor?.serverName() ?? null, removals: this.peers.removals, rejoins: this.peers.rejoins, lastError: this.peers.lastError } : null,
      config: { file: this.config.file, reloads: this.reloads.count, lastReload: this.reloads.last },
      database: { trouble: this.db.trouble, busyTimeoutMs: this.config.sqlite.busyTimeoutMs },
      lastError: this.lastError,
    };
  }

  private schemaStatus(): unknown {
    const schema = this.replica.schema!;
    return {
      /** Position folded in the schema stream, and this node's entries not folded back yet. */
      position: schema.store.position(),
      pending: schema.store.pendingCount(),
      entriesCaptured: schema.capture.entries,
      conflicts: schema.store.conflictCount(),
      conflictsRecent: schema.store.recentConflicts(5),
      fold: schema.applier.stats,
      publish: this.schemaPublisher?.stats ?? null,
      lostEntriesRepublished: this.schemaLoss?.stats.republished ?? 0,
      caughtUp: this.schemaInbound?.ready() ?? false,
    };
  }

  private historyStatus(): unknown {
    const horizon = this.replica.meta.historyHorizon();
    const oldest = this.outbox.oldestHlc();
    return {
      historyS: this.config.cluster.historyS,
      /** Tombstones older than this have been collected here (null: none yet). */
      horizon: horizon > 0n ? hlcFormat(horizon) : null,
      tombstones: this.capture.tables().reduce((a, t) => a + this.replica.clocks.tombstoneCount(t.tid), 0),
      collected: this.historyStats.collected,
      /** Unpublished changes held because they are older than the horizon allows to publish (a restore takes them out). */
      held: oldest !== null && this.outbox.holdBelow > 0n && oldest < this.outbox.holdBelow,
    };
  }

  async checksum(): Promise<TableChecksum[]> {
    return this.replica.checksum();
  }

  /** Stop cleanly: stop consuming, stamp what is left, flush the outbox (bounded), stop NATS, close. */
  async stop(flushMs = 10_000): Promise<void> {
    if (this.phase === 'stopped' || this.phase === 'stopping') return;
    const wasRunning = this.phase === 'running';
    this.phase = 'stopping';
    if (this.tailTimer) clearTimeout(this.tailTimer);
    this.closeWalWatch();
    this.stopLeaderWatch?.();
    this.stopLeaderWatch = null;
    if (this.doctorTimer) clearInterval(this.doctorTimer);
    if (this.repairTimer) clearInterval(this.repairTimer);
    if (this.snapshotTimer) clearInterval(this.snapshotTimer);
    this.snapshots?.stop();
    await this.peers?.stop();
    this.peers = null;
    this.repair?.stop();
    // The connect loop may be inside a long request (a peer asked for a snapshot, a JetStream API
    // call to a server that does not answer): stop does not wait for it beyond a few seconds — closing
    // the connection below ends those requests (chaos seed 404: a node did not stop in 30 s).
    const connecting = this.connectTask?.catch(() => {});
    await Promise.race([connecting, sleep(connectStopWaitMs)]);
    await this.schemaInbound?.stop().catch(() => {});
    await this.inbound?.stop().catch(() => {});
    if (this.db?.conn.open) {
      try {
        this.applier.savePositions();
        while (this.applier.stampLocal().logRows > 0) { /* drain the log */ }
      } catch (err) {
        this.log.warn('could not stamp remaining changes before stop (they stay in the log)', { error: errorMessage(err) });
      }
    }
    if (this.publisher && wasRunning) {
      const deadline = Date.now() + flushMs;
      while (Date.now() < deadline) {
        this.publisher.kick();
        if (this.outbox.counts().batches === 0) break;
        await this.publisher.waitIdle(Math.max(1, deadline - Date.now()));
        await sleep(5);
      }
      const left = this.outbox.counts();
      if (left.batches > 0) this.log.warn('stopping with unpublished batches (kept; published at next start)', left);
    }
    this.publisher?.stop();
    await this.schemaPublisher?.stop();
    await this.link?.close().catch(() => {});
    await Promise.race([connecting, sleep(connectStopWaitMs)]);
    await this.supervisor?.stop().catch(() => {});
    await new Promise<void>((r) => {
      if (!this.httpServer) return r();
      this.httpServer.close(() => r());
      this.httpServer.closeAllConnections();
    });
    this.db?.close();
    try {
      if (readFileSync(this.lockFile, 'utf8').trim() === String(process.pid)) rmSync(this.lockFile);
    } catch { /* gone */ }
    this.phase = 'stopped';
    this.log.info('stopped');
  }
}
