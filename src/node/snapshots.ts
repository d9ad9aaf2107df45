import { mkdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { Config, NodeConfig } from '../config/config.ts';
import { copySnapshot, sha256OfFile } from '../snapshot/copy.ts';
import { covers, manifestVersion, snapshotName, type Manifest } from '../snapshot/manifest.ts';
import { mergeSnapshot, type MergeResult } from '../snapshot/merge.ts';
import { SnapshotStore, type BadObject } from '../snapshot/store.ts';
import { errorMessage } from '../util/errors.ts';
import { hlcFormat, hlcMs, hlcPack } from '../clock/hlc.ts';
import type { Logger } from '../util/log.ts';
import type { Replica } from './replica.ts';
import { snapshotTakeSubject } from '../shard/shard-router.ts';

export interface StreamBounds {
  readonly firstSeq: number;
  readonly lastSeq: number;
}

export interface SnapshotProgress {
  readonly step: 'copy' | 'upload' | 'download' | 'verify' | 'merge' | 'done';
  readonly bytes?: number;
  readonly totalBytes?: number;
  readonly changes?: number;
}

export interface RestoreStatus {
  state: 'restoring' | 'done' | 'failed';
  reason: string;
  snapshot: string | null;
  startedAtMs: number;
  endedAtMs: number | null;
  changes: number;
  /** Rows and clocks older than the history horizon that the snapshot said were deleted or older (forgotten). */
  forgotten: number;
  /** This node's unpublished changes older than the horizon, moved to the dead letters. */
  outboxDropped: number;
  /** Snapshots refused (corrupt, not covered by the streams), with the reason. */
  refused: { name: string; problem: string }[];
  lastError: string | null;
}

/** Meta keys this module owns in __burrow_meta. */
const restoreKey = 'restore';
/** In a restore reason: batches were lost for good (node.ts); the restore then needs a snapshot taken now. */
export const lostBatchesMark = 'lost: neither the streams nor';
const syncedKey = 'synced';

/** Changes per merge transaction; BURROW_RESTORE_CHUNK_CHANGES tunes it (tests make it small to cut a restore short). */
function mergeChunk(): number {
  const v = Number(process.env.BURROW_RESTORE_CHUNK_CHANGES);
  return Number.isInteger(v) && v >= 1 ? v : 2000;
}

/** Attempts of one bucket operation (withStore). */
const bucketAttemptsMax = 5;

/** How long a restoring node waits for a peer to take a snapshot for it. */
const peerSnapshotTimeoutMs = 120_000;
/** How long a snapshot waits for this node's own schema entries to be ordered before it is refused. */
const schemaOrderWaitMs = 15_000;

/**
 * Snapshots of the node's replica and restores from them (membership issue): takes consistent
 * copies (a worker thread) and stores them in the cluster's object store bucket with a manifest;
 * keeps the newest `keep`; answers peers that need one (core NATS, queue group); decides at
 * start whether this replica must restore (new, fell past retention, or a restore was cut short)
 * and merges the newest snapshot the streams still cover, verified by its SHA-256.
 */
export class SnapshotService {
  private store: SnapshotStore | null = null;
  private nc: NatsConnection | null = null;
  private js: JetStreamClient | null = null;
  private responder: Subscription | null = null;
  private taking: Promise<Manifest> | null = null;
  private readonly workDir: string;
  private readonly startedAtMs = Date.now();
  newest: Manifest | null = null;
  taken = 0;
  lastError: { message: string; atMs: number } | null = null;
  restore: RestoreStatus | null = null;
  /** Errors of the last failed restore attempts (newest last, at most 5). */
  readonly restoreErrors: string[] = [];

  constructor(private config: Config, private readonly node: NodeConfig, private readonly replica: Replica,
    private readonly log: Logger, private readonly stampNow: () => void, private readonly isReady: () => boolean) {
    this.workDir = path.join(node.dataDir, 'snapshots');
  }

  /** A reloaded config: [snapshot] settings and this node's place in the member list. */
  reconfigure(config: Config): void {
    this.config = config;
  }

  /** Each node answers on its own subject, so a restoring node asks its peers one by one, never itself. */
  private subject(nodeId: string): string {
    return snapshotTakeSubject(this.config.cluster.name, nodeId);
  }

  /** The connection to use; the bucket is opened (or created) at first use, so a node that needs none runs without it. */
  attach(nc: NatsConnection, js: JetStreamClient): void {
    this.nc = nc;
    this.js = js;
  }

  /** The bucket, (re)opened when needed: one that was deleted or unreachable is created again on the next use. */
  private async openStore(): Promise<SnapshotStore> {
    if (!this.js) throw new Error('the snapshot bucket is not reachable yet (NATS not connected)');
    this.store ??= await SnapshotStore.open(this.js, this.config.cluster.name, this.config.cluster.replicas);
    return this.store;
  }

  /**
   * Run a bucket operation; on failure the handle is dropped and the operation tried again on a
   * bucket opened (or created: it was deleted) again, up to bucketAttemptsMax times. Listing and
   * downloading create an ephemeral consumer, which nats-server 2.9.10 may place on a peer that
   * is down and then never answers (the request times out): another attempt lands elsewhere.
   * The error names the bucket.
   */
  private async withStore<T>(fn: (store: SnapshotStore) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      const store = await this.openStore().catch((err) => {
        throw new Error(`snapshot bucket of cluster ${this.config.cluster.name} cannot be opened: ${errorMessage(err)}`);
      });
      try {
        return await fn(store);
      } catch (err) {
        this.store = null;
        if (attempt >= bucketAttemptsMax) throw new Error(`snapshot bucket ${store.bucket}: ${errorMessage(err)} (${attempt} attempts)`);
      }
    }
  }

  /** Answer peers that need a snapshot (only while this node is ready: its replica is whole). */
  serve(): void {
    if (!this.nc || this.responder) return;
    this.responder = this.nc.subscribe(this.subject(this.node.id), {
      callback: (_err, msg) => {
        if (!this.isReady()) {
          msg.respond(JSON.stringify({ error: `${this.node.id} is not ready` }));
          return;
        }
        this.take().then((m) => msg.respond(JSON.stringify({ name: m.name })),
          (err) => msg.respond(JSON.stringify({ error: errorMessage(err) })));
      },
    });
  }

  stop(): void {
    this.responder?.unsubscribe();
    this.responder = null;
  }

  /** Take a snapshot now (one at a time: a second call while one runs gets the same one). */
  take(onProgress?: (p: SnapshotProgress) => void): Promise<Manifest> {
    this.taking ??= this.takeOne(onProgress).finally(() => {
      this.taking = null;
    });
    return this.taking;
  }

  private async takeOne(onProgress?: (p: SnapshotProgress) => void): Promise<Manifest> {
    const atMs = Date.now();
    const name = snapshotName(this.node.id, atMs);
    const file = path.join(this.workDir, `${name}.db`);
    mkdirSync(this.workDir, { recursive: true });
    try {
      this.stampNow();
      await this.untilSchemaOrdered();
      onProgress?.({ step: 'copy' });
      const c = this.config;
      const facts = await copySnapshot({ dbFile: this.node.db, outFile: file, shards: c.cluster.shards, busyTimeoutMs: c.sqlite.busyTimeoutMs, orderedSchema: true });
      const manifest: Manifest = {
        v: manifestVersion, name, cluster: c.cluster.name, shards: c.cluster.shards, node: this.node.id, atMs,
        bytes: facts.bytes, sha256: facts.sha256, positions: facts.positions, received: facts.received, hlc: facts.hlc, tables: facts.tables,
      };
      await this.withStore((store) => store.put(file, manifest, (bytes) => onProgress?.({ step: 'upload', bytes, totalBytes: facts.bytes })));
      this.taken++;
      this.newest = manifest;
      this.log.info('snapshot written', { name, bytes: facts.bytes, tables: facts.tables.length, ms: Date.now() - atMs });
      await this.prune();
      onProgress?.({ step: 'done', bytes: facts.bytes, totalBytes: facts.bytes });
      return manifest;
    } catch (err) {
      this.lastError = { message: `snapshot: ${errorMessage(err)}`, atMs: Date.now() };
      throw err;
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * This node's own schema entries come back through the schema stream within moments: wait for
   * them (bounded) rather than refuse the copy — a copy with schema changes not ordered yet is
   * refused (copy-worker.ts), and the caller (a restoring peer, the periodic tick) tries again.
   */
  private async untilSchemaOrdered(): Promise<void> {
    const schema = this.replica.schema;
    const deadline = Date.now() + schemaOrderWaitMs;
    while (schema && Date.now() < deadline && schema.store.pendingCount() > 0) {
      await new Promise((r) => setTimeout(r, 100));
      this.stampNow();
    }
  }

  /** Keep the newest `[snapshot] keep`; older ones go (never the one just written). */
  private async prune(): Promise<void> {
    const { snapshots } = await this.list();
    for (const old of snapshots.slice(this.config.snapshot.keep)) {
      await this.withStore((store) => store.delete(old.name)).catch((err) => this.log.warn('could not delete an old snapshot', { name: old.name, error: errorMessage(err) }));
    }
  }

  /** The newest snapshot in the bucket as last seen (listed or taken), or null. */
  newestSnapshot(): Manifest | null {
    return this.newest;
  }

  async list(): Promise<{ snapshots: Manifest[]; bad: BadObject[] }> {
    const r = await this.withStore((store) => store.list(this.config.cluster.name));
    this.newest = r.snapshots[0] ?? null;
    return r;
  }

  /**
   * Periodic snapshots: taken when the newest in the bucket (anyone's; with none yet, this node's
   * start) is older than interval_s. Nodes stagger by their index — up to a minute each, at most
   * half the interval — so one of them takes it and the others see it listed: three nodes once
   * took 70 MB snapshots at the same moment (20 s each) and the replication lag had 1 s spikes.
   */
  async tick(): Promise<void> {
    const intervalMs = this.config.snapshot.intervalS * 1000;
    if (intervalMs === 0 || !this.js || !this.isReady()) return;
    const { snapshots } = await this.list();
    const index = this.config.nodes.findIndex((n) => n.id === this.node.id);
    const staggerMs = Math.min(60_000, intervalMs / 2);
    const newestAt = snapshots[0]?.atMs ?? this.startedAtMs;
    if (Date.now() - newestAt >= intervalMs + index * staggerMs) await this.take();
  }

  /** This replica was in sync with the cluster once (read streams, or finished a restore): it has a history of its own. */
  synced(): boolean {
    const { meta, received } = this.replica;
    return meta.get(syncedKey) !== undefined || received.positions().size > 0 || received.load().size > 0;
  }

  /** This replica needs no restore (from now on only a fall past retention or a cut-short restore makes one). */
  markSynced(): void {
    this.replica.db.writeTx(() => {
      this.replica.meta.set(syncedKey, 1n);
      this.replica.meta.delete(restoreKey);
    });
  }

  /**
   * Changes older than this may meet replicas that already collected the tombstones they lose
   * to: a change published now is read within stream_age_max_s, by replicas whose horizon is
   * history_s behind their clock (which may run hlc_skew_ms_max ahead).
   */
  staleBelow(): bigint {
    const c = this.config.cluster;
    return hlcPack(Math.max(0, Date.now() + c.streamAgeMaxS * 1000 - c.historyS * 1000 + c.hlcSkewMsMax), 0);
  }

  /** This node's outbox holds changes too old to publish (it was cut off for most of the history horizon). */
  private staleOutbox(): bigint | null {
    const oldest = this.replica.outbox.oldestHlc();
    return oldest !== null && oldest < this.staleBelow() ? oldest : null;
  }

  /** Why this replica must restore before it reads the streams, or null. */
  async restoreReason(streams: readonly StreamBounds[]): Promise<string | null> {
    const cut = this.replica.meta.get(restoreKey);
    if (cut !== undefined) return `${String(cut)} (a restore was cut short: redoing it)`;
    if (!this.synced()) {
      // Anything ever written counts, even when it has aged out of the streams since.
      const hasData = streams.some((s) => s.lastSeq > 0) || (await this.list()).snapshots.length > 0;
      if (hasData) return 'new replica: the cluster already has data';
      this.markSynced();
      return null;
    }
    const stale = this.staleOutbox();
    if (stale !== null) return `unpublished changes since ${hlcFormat(stale)}, older than the history horizon allows to publish`;
    const positions = this.replica.received.positions();
    // An empty stream counts too: its messages aged out (first = last + 1) before this node read them.
    const behind = streams.findIndex((s, shard) => (positions.get(shard) ?? 0) < s.firstSeq - 1);
    if (behind >= 0) {
      return `fell past retention: shard ${behind} stream starts at ${streams[behind]!.firstSeq}, this replica applied up to ${positions.get(behind) ?? 0}`;
    }
    return null;
  }

  /**
   * Restore: the newest snapshot (or `only`) whose positions the streams still cover, verified by
   * its SHA-256 (a corrupt one is refused and the previous tried); none ⇒ a peer takes one now.
   * The merge goes through the LWW apply path; the replica is marked synced only at the end, so a
   * restore cut short is redone at the next start. Throws when nothing usable was found (retried).
   */
  async runRestore(streams: readonly StreamBounds[], reason: string, only?: string, onProgress?: (p: SnapshotProgress) => void): Promise<Manifest> {
    const st: RestoreStatus = this.restore = {
      state: 'restoring', reason, snapshot: null, startedAtMs: Date.now(), endedAtMs: null, changes: 0, forgotten: 0, outboxDropped: 0, refused: [], lastError: null,
    };
    this.log.info('restoring from a snapshot', { reason });
    // Persisted first: a start that finds it restores again (never ready half-restored).
    if (this.replica.meta.get(restoreKey) === undefined) this.replica.db.writeTx(() => this.replica.meta.set(restoreKey, reason));
    try {
      const m = await this.tryCandidates(streams, st, only, onProgress);
      st.state = 'done';
      st.endedAtMs = Date.now();
      this.markSynced();
      this.log.info('restore done', { snapshot: m.name, from: m.node, changes: st.changes, ms: st.endedAtMs - st.startedAtMs });
      return m;
    } catch (err) {
      st.state = 'failed';
      st.lastError = errorMessage(err);
      this.log.warn('restore failed', { reason, error: st.lastError });
      this.restoreErrors.push(st.lastError);
      if (this.restoreErrors.length > 5) this.restoreErrors.shift();
      throw err;
    }
  }

  private async tryCandidates(streams: readonly StreamBounds[], st: RestoreStatus, only: string | undefined, onProgress?: (p: SnapshotProgress) => void): Promise<Manifest> {
    let { snapshots } = await this.list();
    if (only !== undefined) {
      snapshots = snapshots.filter((m) => m.name === only);
      if (snapshots.length === 0) throw new Error(`no snapshot named ${only} in the bucket (burrow snapshots lists them)`);
    }
    // Changes too old to publish are judged by a snapshot taken after that point (a peer takes one if need be).
    const freshAfterMs = this.staleOutbox() === null ? 0 : hlcMs(this.staleBelow()) + this.config.cluster.hlcSkewMsMax;
    // Batches no origin and no stream still has: only a replica that applied them holds their
    // effect, so a peer takes a snapshot now — one in the bucket may predate them (chaos seed
    // 101: a restore from the run's first snapshot lost a write).
    const mustBeNew = only === undefined && st.reason.includes(lostBatchesMark);
    let usable = mustBeNew ? [] : snapshots.filter((m) => only !== undefined || (covers(m, streams) && m.atMs >= freshAfterMs));
    for (const m of snapshots) {
      if (usable.includes(m)) continue;
      st.refused.push({ name: m.name, problem: mustBeNew ? 'may predate the batches this node lost for good (a peer takes a new one)'
        : m.atMs < freshAfterMs ? 'older than this node\'s unpublished changes allow' : 'the streams no longer hold every change after it' });
    }
    if (usable.length === 0) {
      const name = await this.askPeer();
      usable = (await this.list()).snapshots.filter((m) => m.name === name);
    }
    for (const m of usable) {
      const problem = await this.tryOne(m, st, onProgress);
      if (problem === null) return m;
      st.refused.push({ name: m.name, problem });
      this.log.error(`snapshot ${m.name} refused: ${problem}; trying the previous one`);
    }
    throw new Error(`no usable snapshot (${st.refused.map((r) => `${r.name}: ${r.problem}`).join('; ') || 'the bucket is empty'})`);
  }

  /** Download, verify and merge one snapshot; the problem when it is not usable (nothing merged then). */
  private async tryOne(m: Manifest, st: RestoreStatus, onProgress?: (p: SnapshotProgress) => void): Promise<string | null> {
    mkdirSync(this.workDir, { recursive: true });
    const file = path.join(this.workDir, `${m.name}.restore.db`);
    rmSync(file, { force: true });
    try {
      st.snapshot = m.name;
      try {
        await this.withStore((store) => store.download(m.name, file, (bytes) => onProgress?.({ step: 'download', bytes, totalBytes: m.bytes })));
      } catch (err) {
        return `download failed: ${errorMessage(err)}`;
      }
      onProgress?.({ step: 'verify' });
      const size = statSync(file).size;
      const sha = await sha256OfFile(file);
      if (size !== m.bytes || sha !== m.sha256) return `corrupt: SHA-256 ${sha} (${size} bytes), manifest says ${m.sha256} (${m.bytes} bytes)`;
      const r: MergeResult = await mergeSnapshot(this.replica, file, {
        nodeId: this.node.id, cluster: this.config.cluster.name, shards: this.config.cluster.shards, log: this.log, chunkChanges: mergeChunk(),
        staleBelow: this.staleBelow(), skewMs: this.config.cluster.hlcSkewMsMax, takenAtMs: m.atMs,
        onProgress: (p) => {
          st.changes = p.changes;
          onProgress?.({ step: 'merge', changes: p.changes });
        },
      });
      st.changes = r.changes;
      st.forgotten = r.forgotten;
      st.outboxDropped = r.outboxDropped;
      if (r.schemaErrors.length > 0) this.log.warn('restore: schema objects not created', { errors: r.schemaErrors.join('; ') });
      return null;
    } finally {
      rmSync(file, { force: true });
    }
  }

  /**
   * Ask the peers, one by one from the next member after this node, to take a snapshot now; the
   * first ready one does, and its name is returned. A peer that is down (no responders) or not
   * ready answers at once; only a peer that is taking one is waited for.
   */
  private async askPeer(): Promise<string> {
    if (!this.nc) throw new Error('not connected to NATS');
    this.log.info('no snapshot covers the streams: asking a peer to take one');
    const ids = this.config.nodes.map((n) => n.id);
    const me = ids.indexOf(this.node.id);
    const peers = ids.filter((id) => id !== this.node.id);
    const order = [...peers.slice(Math.max(0, me)), ...peers.slice(0, Math.max(0, me))];
    const problems: string[] = [];
    for (const peer of order) {
      try {
        const reply = await this.nc.request(this.subject(peer), JSON.stringify({ from: this.node.id }), { timeout: peerSnapshotTimeoutMs });
        const body = JSON.parse(reply.string()) as { name?: string; error?: string };
        if (body.name) return body.name;
        problems.push(`${peer}: ${body.error ?? 'no reason given'}`);
      } catch (err) {
        problems.push(`${peer}: ${errorMessage(err)}`);
      }
    }
    throw new Error(`no peer took a snapshot for this node (${problems.join('; ') || 'no other member'}): is another node running and ready?`);
  }

  status(): Record<string, unknown> {
    const n = this.newest;
    return {
      newest: n ? { name: n.name, node: n.node, atMs: n.atMs, bytes: n.bytes } : null,
      taken: this.taken,
      intervalS: this.config.snapshot.intervalS,
      keep: this.config.snapshot.keep,
      lastError: this.lastError,
      restore: this.restore,
      restoreErrors: this.restoreErrors,
    };
  }
}
