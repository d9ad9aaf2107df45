import { isIoError, type Database } from '../sqlite/database.ts';
import { hlcMs, type Hlc } from '../clock/hlc.ts';
import { decodeValues, encodeValues, type SqlValue } from '../codec/value-codec.ts';
import { batchVersion, decodeBatch, encodeBatch, MalformedBatchError, type WireBatch, type WireChange, type WireTable } from '../codec/batch-codec.ts';
import type { Capture, CapturedTable } from '../capture/capture.ts';
import type { ChangeStamper, StampResult } from '../capture/change-stamper.ts';
import { ClockStore } from '../store/clock-store.ts';
import type { MetaStore } from '../store/meta-store.ts';
import type { Quarantine } from '../store/quarantine.ts';
import type { ReceivedStore } from '../store/received-store.ts';
import { assert } from '../util/assert.ts';
import { sabotage } from '../util/sabotage.ts';
import type { Logger } from '../util/log.ts';
import { lwwWins } from './lww.ts';
import { RowWriter } from './row-writer.ts';
import { UniqueResolver } from './unique-resolver.ts';
import { WaitingRoom } from './waiting-room.ts';
import type { FoldOutcome, SchemaApplier } from './schema-applier.ts';
import type { SchemaEvent, SchemaStore } from '../store/schema-store.ts';
import type { SchemaCapture } from '../capture/schema-capture.ts';

/** Schema replication's parts the applier uses (absent: a change for a missing table or column waits). */
export interface ApplierSchema {
  readonly store: SchemaStore;
  readonly applier: SchemaApplier;
  readonly capture: SchemaCapture;
}

export { rowJson } from './unique-resolver.ts';

/** One change of a snapshot being merged (restore): its origin node, its table as the snapshot has it. */
export interface MergeChange {
  readonly origin: string;
  readonly wt: WireTable;
  readonly c: WireChange;
}

/**
 * A message to apply: its shard, stream position, bytes and origin — the node whose signature it
 * carries ([security] sign), else the one its msgID names. `refused` (the signature did not verify,
 * the reason): dead-lettered as it is, nothing of it applied.
 */
export interface ApplyMessage {
  readonly shard: number;
  readonly seq: number;
  readonly data: Uint8Array;
  readonly origin?: string;
  readonly refused?: string;
}

export type MessageOutcome =
  | { readonly kind: 'applied' }
  /** Held: its clock is too far ahead (or the waiting room is full); redeliver later. */
  | { readonly kind: 'held'; readonly origin: string; readonly aheadMs: number };

/** Batch-number tracking the apply transaction feeds (replication/gaps.ts GapTracker). */
export interface BatchNumbers {
  begin(): void;
  commit(): void;
  rollback(): void;
  noteApplied(origin: string, n: number): { readonly contiguous: number | null; readonly above: boolean };
}

export interface ApplyStats {
  messages: number;
  changesApplied: number;
  changesSkipped: number;
  ownMessages: number;
  deadLettered: number;
  /** Whole messages rejected (malformed, wrong version, foreign origin, wrong shard). */
  messagesRejected: number;
  held: number;
  /** Changes parked in __burrow_waiting (schema not there yet), and later applied from there. */
  changesParked: number;
  changesUnparked: number;
  /** Changes to a table the replicated schema dropped after them (their effect went with the table). */
  changesDroppedWithTable: number;
  /** Own batches that went through the apply path: made before this database was replaced, or their first key rewritten since. */
  ownRecovered: number;
}

export interface ApplierParts {
  readonly db: Database;
  readonly capture: Capture;
  readonly stamper: ChangeStamper;
  readonly clocks: ClockStore;
  readonly meta: MetaStore;
  readonly quarantine: Quarantine;
  readonly received: ReceivedStore;
  readonly hlc: Hlc;
  readonly nodeId: string;
  readonly log: Logger;
  /** Node ids of the cluster: messages from any other origin are rejected. */
  readonly members: ReadonlySet<string>;
  /** Batch-number tracking per origin; contiguous values are saved in the apply transaction. */
  readonly gaps: BatchNumbers | null;
  readonly schema?: ApplierSchema | null;
}

/** One change with what it needs to apply: its batch's origin and table, and where it came from. */
interface ChangeContext {
  readonly shard: number;
  readonly seq: number;
  readonly origin: string;
  readonly wt: WireTable;
  readonly c: WireChange;
}

/**
 * A statement failed and SQLite rolled the whole transaction back (disk full, I/O error, or an
 * application trigger's RAISE(ROLLBACK)): the apply is aborted, since anything after it would
 * autocommit with echo suppression off. `poison` names the change when the cause is not the disk.
 */
class TransactionLostError extends Error {
  constructor(cause: unknown, readonly poison: string | null) {
    super(`the apply transaction was rolled back by SQLite: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'TransactionLostError';
  }
}

/** The table created from a snapshot's DDL is not the snapshot's table (another SQLite, a capture rule): merged row by row instead. */
export class SchemaMismatch extends Error {
  override name = 'SchemaMismatch';
}

/** A held message waits at most this long for this node's clock (further ahead: dead-lettered). */
export const holdAheadMaxMs = 3_600_000;

/** Transactions retried in one applyMessages call, each after dead-lettering the change that rolled the last one back. */
const poisonRetriesMax = 8;

function changeId(ctx: ChangeContext): string {
  return `${ctx.origin}/${ctx.c.h}/${Buffer.from(ctx.c.k).toString('hex')}`;
}

/**
 * The one apply function: used by the shard consumers, gap repair, the waiting room, the
 * simulation and tests. Applies a group of messages in ONE SQLite transaction: stamps pending
 * local changes first (stamp-before-apply), sets the echo-suppression flag, applies each change
 * by LWW against the row's clock (deletes leave tombstones; UNIQUE clashes shadow the weaker
 * version), records shard positions, batch numbers and the HLC mark, resets the flag, commits.
 * A change that cannot apply goes to __burrow_dead with the reason; the rest goes on. In-memory
 * state (batch numbers, waiting count) follows the transaction: rolled back with it.
 */
export class Applier {
  readonly stats: ApplyStats = {
    messages: 0, changesApplied: 0, changesSkipped: 0, ownMessages: 0, deadLettered: 0, messagesRejected: 0, held: 0,
    changesParked: 0, changesUnparked: 0, changesDroppedWithTable: 0, ownRecovered: 0,
  };
  /** Origin commit times (ms, first change's HLC) of remote batches applied since the caller last took them (metrics; bounded). */
  readonly appliedCommitMs: number[] = [];
  /** Last hold per origin (status). */
  readonly holds = new Map<string, { aheadMs: number; atMs: number }>();
  readonly waiting: WaitingRoom;
  readonly unique: UniqueResolver;
  private readonly rows: RowWriter;
  private readonly p: ApplierParts;
  /** Tables whose visible rows changed in this transaction: their shadowed versions are retried. */
  private readonly dirty = new Set<number>();
  private schemaGeneration = -1;
  /** Changes that rolled an apply transaction back (not the disk): dead-lettered when met again. */
  private readonly poisoned = new Set<string>();
  /** Positions of own-only message groups, applied without a transaction: stored with the next one. */
  private readonly unsavedPositions = new Map<number, number>();

  constructor(parts: ApplierParts) {
    this.p = parts;
    this.rows = new RowWriter(parts.db);
    this.waiting = new WaitingRoom(parts.db);
    this.unique = new UniqueResolver(parts.db, parts.clocks, this.rows, parts.quarantine, parts.log);
  }

  /** Changes parked until their table or columns exist here. */
  waitingCount(): number {
    return this.waiting.count();
  }

  /**
   * One apply transaction: stamp pending local changes first (stamp-before-apply; this also reads
   * the schema inside the transaction), echo suppression on, fn, UNIQUE reconcile, HLC mark.
   */
  private inApplyTx<T>(fn: () => T, stamp: () => void = () => this.stampAll()): T {
    const { db, gaps } = this.p;
    gaps?.begin();
    try {
      const r = db.writeTx(() => {
        stamp();
        this.onSchema();
        const setApplying = db.prepare('UPDATE __burrow_state SET applying = ? WHERE id = 1');
        // TEST ONLY (no-echo-suppression): applied changes are captured again as local ones.
        setApplying.run(sabotage.noEchoSuppression ? 0n : 1n);
        const out = fn();
        this.reconcileDirty();
        this.p.meta.saveHlc(this.p.hlc.peek());
        setApplying.run(0n);
        return out;
      });
      gaps?.commit();
      return r;
    } catch (err) {
      gaps?.rollback();
      this.p.schema?.store.forgetCache();
      this.waiting.recount();
      this.dirty.clear();
      throw err;
    }
  }

  private stampAll(): void {
    for (;;) {
      const r = this.p.stamper.stampPending();
      for (const tid of r.tids) this.dirty.add(tid);
      if (r.logRows === 0) break;
    }
  }

  /** The schema changed (seen inside this transaction): fresh statements, waiting changes due now. */
  private onSchema(): void {
    if (this.p.capture.generation === this.schemaGeneration) return;
    this.schemaGeneration = this.p.capture.generation;
    this.rows.syncGeneration(this.schemaGeneration);
    this.waiting.wakeAll();
  }

  private reconcileDirty(): void {
    for (const tid of this.dirty) {
      const t = this.p.capture.byTid(tid);
      if (t) this.unique.reconcile(t);
    }
    this.dirty.clear();
  }

  /**
   * The node's tail: one stamp pass of local changes in a write transaction, then UNIQUE losers
   * the local writes freed a value for come back (echo suppression on for that part).
   */
  stampLocal(): StampResult {
    let pass: StampResult | null = null;
    this.inApplyTx(() => undefined, () => {
      pass = this.p.stamper.stampPending();
      for (const tid of pass.tids) this.dirty.add(tid);
    });
    assert(pass, 'the stamp pass ran');
    return pass;
  }

  applyMessages(messages: readonly ApplyMessage[]): MessageOutcome[] {
    // Only our own batches coming back (their changes are in the clock table since capture): no
    // transaction at all. Their positions are stored with the next transaction (or savePositions()).
    if (messages.length > 0 && messages.every((m) => m.refused === undefined && m.origin === this.p.nodeId && this.stampedHere(m.data))) {
      this.stats.messages += messages.length;
      this.stats.ownMessages += messages.length;
      for (const m of messages) this.unsavedPositions.set(m.shard, Math.max(this.unsavedPositions.get(m.shard) ?? 0, m.seq));
      return messages.map(() => ({ kind: 'applied' }));
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return this.inApplyTx(() => {
          const outcomes = messages.map((m) => this.applyOne(m));
          this.p.received.savePositions(this.positionsAfter(messages, outcomes));
          this.unsavedPositions.clear();
          return outcomes;
        });
      } catch (err) {
        // A change whose statement rolls the whole transaction back is dead-lettered on the next try.
        if (!(err instanceof TransactionLostError) || err.poison === null || attempt >= poisonRetriesMax) throw err;
        this.poisoned.add(err.poison);
      } finally {
        if (this.poisoned.size > 1000) this.poisoned.clear();
      }
    }
  }

  /**
   * Per shard, the highest sequence with nothing held at or before it in this call (a held message
   * is read again from its own position after a restart), merged with own batches not saved yet.
   */
  private positionsAfter(messages: readonly ApplyMessage[], outcomes: readonly MessageOutcome[]): Map<number, number> {
    const heldFrom = new Map<number, number>();
    messages.forEach((m, i) => {
      if (outcomes[i]!.kind === 'held') heldFrom.set(m.shard, Math.min(heldFrom.get(m.shard) ?? Infinity, m.seq));
    });
    const out = new Map(this.unsavedPositions);
    for (const m of messages) {
      if (m.seq >= (heldFrom.get(m.shard) ?? Infinity)) continue;
      out.set(m.shard, Math.max(out.get(m.shard) ?? 0, m.seq));
    }
    return out;
  }

  /**
   * An own batch this replica has: its first change's clock is here exactly. Otherwise (replaced
   * by a later version, or a replica restored after a wipe) it goes through the apply path like
   * any batch, where LWW makes it a no-op for every change this replica already has.
   */
  private stampedHere(b: WireBatch | Uint8Array): boolean {
    let batch: WireBatch;
    try {
      batch = b instanceof Uint8Array ? decodeBatch(b) : b;
    } catch {
      return false; // malformed: the apply path rejects it with the reason
    }
    const c = batch.changes[0];
    if (!c) return true;
    // Not here (dropped since, or not created yet on a restored replica): the apply path decides.
    const t = this.p.capture.byName(batch.tables[c.t]!.n);
    if (!t) return false;
    // Exactly this change's clock: the batch was applied in this replica's history, all of it (a
    // batch is one transaction everywhere). A newer clock proves nothing: a restored replica may
    // hold the key from a later write of another node without ever having had this batch (chaos
    // seed 101: its own delete of another key in the batch was lost). Then LWW decides, per change.
    const cur = this.p.clocks.get(t.tid, decodeValues(c.k));
    return cur !== undefined && cur.hlc === c.h && cur.node === this.p.nodeId;
  }

  /** Store positions of own batches that went by without a transaction (the node calls this now and then, and at stop). */
  savePositions(): void {
    if (this.unsavedPositions.size === 0) return;
    const pos = new Map(this.unsavedPositions);
    this.p.db.writeTx(() => this.p.received.savePositions(pos));
    for (const [shard, seq] of pos) if (this.unsavedPositions.get(shard) === seq) this.unsavedPositions.delete(shard);
  }

  /** Every row of a captured table queued for stamping again (a restore dropped the DDL they were stamped under). */
  restamp(name: string): number {
    return this.p.capture.restampAll(name);
  }

  /**
   * Changes that waited for a schema longer than the waiting room's age bound move to the dead
   * letters (with their reason; `burrow dead --retry` brings them back), at most `limit` per call.
   */
  expireWaiting(limit = 1000, nowMs = Date.now()): number {
    return this.p.db.writeTx(() => {
      const old = this.waiting.takeExpired(limit, nowMs);
      for (const w of old) {
        this.deadLetter({ shard: w.shard, seq: w.seq, origin: w.origin, table: w.table, hlc: w.hlc, reason: `waited too long for the schema (${w.reason})`, change: w.change });
      }
      return old.length;
    });
  }

  /**
   * Retry parked changes that are due (all of them when `all`): applied when their table and
   * columns exist now, else rescheduled with backoff. Returns how many were applied.
   */
  retryWaiting(all: boolean, limit = 500): { applied: number; stillWaiting: number } {
    if (this.waiting.count() === 0) return { applied: 0, stillWaiting: 0 };
    let applied = 0;
    this.inApplyTx(() => {
      for (const w of this.waiting.due(all, limit)) {
        const batch = decodeBatch(w.change); // written by us: valid
        const c = batch.changes[0]!;
        const plan = this.plan(batch.tables[0]!, batch.o);
        if (plan.wt === null) {
          this.waiting.remove(w.id, w.change.length);
          this.stats.changesDroppedWithTable++;
          continue;
        }
        if (typeof plan.local === 'string' && !plan.underSchema) {
          this.waiting.later(w, plan.local);
          continue;
        }
        // Its clock joins ours like any remote clock (a restart may have lowered our wall clock).
        if (!this.p.hlc.receive(c.h).ok) {
          this.waiting.later(w, 'clock too far ahead');
          continue;
        }
        this.waiting.remove(w.id, w.change.length);
        this.stats.changesUnparked++;
        applied++;
        const ctx = { shard: w.shard, seq: w.seq, origin: batch.o, wt: plan.wt, c };
        const local = plan.local;
        if (typeof local === 'string') this.applyUnderSchema(ctx);
        else this.applyChange(ctx, local);
      }
    });
    if (applied > 0) this.p.log.info('applied changes that were waiting for the schema', { applied, stillWaiting: this.waiting.count() });
    return { applied, stillWaiting: this.waiting.count() };
  }

  /**
   * Restore by merge: changes read from a snapshot, applied by LWW in ONE transaction like any
   * remote change (stamp-before-apply, echo suppression, UNIQUE shadowing, waiting room). Any
   * origin, this node's own included: a wiped node gets its earlier rows back. A clock too far
   * ahead fails the merge (the restore tries another snapshot or later).
   */
  mergeChanges(changes: readonly MergeChange[]): void {
    this.inApplyTx(() => {
      const tables = new Map<WireTable, CapturedTable | string>();
      for (const { origin, wt, c } of changes) {
        const r = this.p.hlc.receive(c.h);
        if (!r.ok) throw new Error(`the snapshot holds a change of ${origin} ${r.aheadMs} ms ahead of this node's clock (cluster.hlc_skew_ms_max)`);
        let local = tables.get(wt);
        if (local === undefined) tables.set(wt, local = this.resolveTable(wt));
        const ctx = { shard: -1, seq: 0, origin, wt, c };
        if (typeof local === 'string') this.park(ctx, local);
        else this.applyChange(ctx, local);
      }
    });
  }

  /**
   * Restore, fast path: a table this replica does not have is created, captured, and filled with
   * the rows and clocks of the attached snapshot `from` as they are, in ONE apply transaction (no
   * application can have written a table that did not exist; a crash leaves nothing). `ddl` runs
   * first (the CREATE TABLE), `after` once the rows are in (its indexes). Returns the rows copied,
   * or null when the table as created here is not the snapshot's (the caller merges row by row).
   */
  copyNewTable(o: { name: string; ddl: string; after: readonly string[]; from: string; fromClock: string; fromClockDdl: string; sameSchema: (t: CapturedTable) => boolean }): number | null {
    return this.inApplyTx(() => {
      if (this.p.capture.byName(o.name)) return null;
      this.p.db.exec(o.ddl);
      this.p.capture.sync();
      const local = this.p.capture.byName(o.name);
      if (!local || !o.sameSchema(local) || o.fromClockDdl !== ClockStore.ddl(-1, local.schema)) throw new SchemaMismatch();
      const rows = this.rows.copyAll(local, o.from);
      const maxHlc = this.p.clocks.copyFrom(local.tid, o.from, o.fromClock);
      if (maxHlc > 0n) {
        const r = this.p.hlc.receive(maxHlc);
        if (!r.ok) throw new Error(`the snapshot holds a clock ${r.aheadMs} ms ahead of this node's clock (cluster.hlc_skew_ms_max)`);
      }
      for (const sql of o.after) this.p.db.exec(sql);
      this.p.capture.sync();
      return rows;
    });
  }

  /**
   * Bounded history: collect tombstones older than `below` (the horizon, which only rises), at
   * most `limit` in one transaction. Only clock tables change: nothing is captured.
   */
  collectHistory(below: bigint, limit: number): number {
    return this.p.db.writeTx(() => {
      let n = 0;
      for (const t of this.p.capture.tables()) {
        if (n >= limit) break;
        n += this.p.clocks.collectTombstones(t.tid, below, limit - n);
      }
      this.p.meta.raiseHistoryHorizon(below);
      return n;
    });
  }

  /**
   * Restore past the history horizon: rows and clocks of `name` older than `below` that the
   * attached snapshot has no version of at least as new are forgotten here (one apply transaction,
   * not captured): for versions that old the snapshot is the cluster's state, its absence a delete
   * whose tombstone is already collected. The merge then brings the snapshot's versions in.
   * Returns the clock entries forgotten, or -1 when the snapshot's key is declared otherwise.
   */
  forgetOlderThanSnapshot(o: { name: string; from: string; fromClock: string; fromClockDdl: string; below: bigint }): number {
    return this.inApplyTx(() => {
      const local = this.p.capture.byName(o.name);
      if (!local || !this.p.clocks.exists(local.tid)) return 0;
      // Keys compare only between clock tables declared alike (-1: the caller says so and merges by LWW).
      if (o.fromClockDdl !== ClockStore.ddl(-1, local.schema)) return -1;
      const where = ClockStore.olderThanSnapshot(local.tid, local.schema.keyColumns.length, o.from, o.fromClock);
      const rows = this.rows.deleteWhereClock(local, `main.${ClockStore.tableName(local.tid)}`, where, [o.below]);
      if (rows > 0) this.dirty.add(local.tid);
      return this.p.clocks.forgetWhere(local.tid, where, [o.below]);
    });
  }

  private applyOne(m: ApplyMessage): MessageOutcome {
    this.stats.messages++;
    if (m.refused !== undefined) {
      this.reject(m, null, m.refused);
      return { kind: 'applied' };
    }
    let batch: WireBatch;
    try {
      batch = decodeBatch(m.data);
    } catch (err) {
      this.reject(m, null, err instanceof MalformedBatchError ? `malformed: ${err.message}` : `undecodable: ${String(err)}`);
      return { kind: 'applied' };
    }
    const { members, nodeId } = this.p;
    if (!members.has(batch.o)) {
      this.reject(m, batch.o, `origin node "${batch.o}" is not a member of this cluster (members: ${[...members].join(', ')})`);
      return { kind: 'applied' };
    }
    if (batch.s !== m.shard) {
      this.reject(m, batch.o, `batch says shard ${batch.s} but arrived on shard ${m.shard}`);
      return { kind: 'applied' };
    }
    if (m.origin !== undefined && batch.o !== m.origin) {
      this.reject(m, batch.o, `batch says origin ${batch.o} but comes from ${m.origin}`);
      return { kind: 'applied' };
    }
    if (batch.o === nodeId && this.stampedHere(batch)) {
      // Our own batch: its changes were stamped into the clock table when captured (equal clock: no-op).
      this.stats.ownMessages++;
      return { kind: 'applied' };
    }
    if (batch.o === nodeId) {
      // Ours, but not in this replica's clocks: this node made it before its database was replaced
      // (wiped and restored from a snapshot that did not have it yet). Applied like any change,
      // and this node's numbering continues above it.
      this.stats.ownRecovered++;
      if (batch.n !== undefined && batch.n > this.p.meta.lastBatchNumber()) this.p.meta.saveLastBatchNumber(batch.n);
    }
    const held = this.holdReason(batch, m);
    if (held) return held;
    const plans = batch.tables.map((t) => this.plan(t, batch.o));
    if (this.waiting.full() && plans.some((p) => typeof p.local === 'string' && !p.underSchema)) {
      // The waiting room is full: leave the message in JetStream for now (never drop it).
      this.stats.held++;
      return { kind: 'held', origin: batch.o, aheadMs: 0 };
    }
    for (const c of batch.changes) {
      const plan = plans[c.t];
      assert(plan, 'decodeBatch validated table indexes');
      if (plan.wt === null) {
        this.stats.changesDroppedWithTable++;
        continue;
      }
      const ctx = { shard: m.shard, seq: m.seq, origin: batch.o, wt: plan.wt, c };
      if (typeof plan.local !== 'string') this.applyChange(ctx, plan.local);
      else if (plan.underSchema) this.applyUnderSchema(ctx);
      else this.park({ ...ctx, wt: batch.tables[c.t]! }, plan.local); // parked as sent: planned again when retried
    }
    // Own batches are not tracked for gaps: no one but this node could fill them (its own sent log).
    if (batch.n !== undefined && this.p.gaps && batch.o !== this.p.nodeId) this.p.received.save(batch.o, batch.n, this.p.gaps.noteApplied(batch.o, batch.n));
    if (batch.o !== this.p.nodeId && batch.changes.length > 0 && this.appliedCommitMs.length < 10_000) this.appliedCommitMs.push(hlcMs(batch.changes[0]!.h));
    return { kind: 'applied' };
  }

  /**
   * A batch not to apply yet: its clock is too far ahead (it applies once this node's clock is
   * within the bound). One further ahead than waiting could fix in holdAheadMaxMs is dead-lettered
   * instead: no message holds a shard for longer than that.
   */
  private holdReason(batch: WireBatch, m: ApplyMessage): MessageOutcome | null {
    let maxHlc = 0n;
    for (const c of batch.changes) if (c.h > maxHlc) maxHlc = c.h;
    const r = this.p.hlc.receive(maxHlc);
    if (!r.ok && r.aheadMs > holdAheadMaxMs) {
      this.reject(m, batch.o, `its clock is ${r.aheadMs} ms ahead of this node's: holding it until it is within cluster.hlc_skew_ms_max would stall the shard for more than ${holdAheadMaxMs / 60_000} minutes`);
      return { kind: 'applied' };
    }
    if (!r.ok) {
      this.stats.held++;
      this.holds.set(batch.o, { aheadMs: r.aheadMs, atMs: Date.now() });
      return { kind: 'held', origin: batch.o, aheadMs: r.aheadMs };
    }
    this.holds.delete(batch.o);
    return null;
  }

  /** LWW-apply one change to an existing local table; a change that cannot apply is dead-lettered. */
  private applyChange(ctx: ChangeContext, local: CapturedTable): void {
    const { c, origin } = ctx;
    if (this.poisoned.size > 0 && this.poisoned.delete(changeId(ctx))) {
      this.deadLetterChange(ctx, 'apply failed: it rolled the whole transaction back (an application trigger\'s RAISE(ROLLBACK)?)');
      return;
    }
    try {
      const key = decodeValues(c.k);
      if (key.length !== local.schema.keyColumns.length) throw new Error(`key has ${key.length} values, table has ${local.schema.keyColumns.length} key columns`);
      const cur = this.p.clocks.get(local.tid, key);
      if (cur && !lwwWins(c.h, origin, cur.hlc, cur.node)) {
        this.stats.changesSkipped++;
        return;
      }
      const wasVisible = cur !== undefined && !cur.deleted && cur.shadow === null;
      if (c.d === 1) {
        this.rows.delete(local, key);
        this.p.clocks.set(local.tid, key, c.h, origin, true);
      } else {
        this.upsert(ctx, local, key, wasVisible);
      }
      if (wasVisible) this.dirty.add(local.tid);
      this.stats.changesApplied++;
    } catch (err) {
      // SQLite rolled the transaction back (disk full, I/O): anything after would autocommit with
      // echo suppression off. Abort the whole apply; it is retried.
      if (!this.p.db.conn.inTransaction) throw new TransactionLostError(err, isIoError(err) ? null : changeId(ctx));
      // A failed statement undoes itself (its triggers included); the rest of the batch goes on.
      this.deadLetterChange(ctx, `apply failed: ${(err as Error).message}`);
    }
  }

  private upsert(ctx: ChangeContext, local: CapturedTable, key: SqlValue[], wasVisible: boolean): void {
    const { c, wt, origin } = ctx;
    assert(c.r, 'decodeBatch validated row images');
    const row = decodeValues(c.r);
    if (row.length !== wt.c.length) throw new Error(`row image has ${row.length} values for ${wt.c.length} columns`);
    // LWW was decided on the change's key: the row image must hold the same key, byte for byte.
    const inImage = local.schema.keyColumns.map((k) => wt.c.indexOf(k));
    if (inImage.some((i) => i < 0) || !encodeValues(inImage.map((i) => row[i]!)).equals(Buffer.from(c.k))) {
      throw new Error('the row image holds a different key than the change names');
    }
    const placed = this.unique.place(local, { key, hlc: c.h, node: origin, columns: wt.c, row });
    if (placed === 'visible') {
      this.p.clocks.set(local.tid, key, c.h, origin, false);
      return;
    }
    // Shadowed: a stronger version holds one of its unique values. The row's older version leaves.
    if (wasVisible) this.rows.delete(local, key);
    this.p.clocks.set(local.tid, key, c.h, origin, false, { columns: wt.c, image: Buffer.from(c.r) });
  }

  /** A change for a table or column that does not exist here yet: kept in __burrow_waiting, retried. */
  private park(ctx: ChangeContext, reason: string): void {
    this.waiting.park(ctx.shard, ctx.seq, ctx.origin, ctx.wt.n, ctx.c.h, reason, this.oneChange(ctx));
    this.stats.changesParked++;
    if (this.stats.changesParked === 1 || this.stats.changesParked % 1000 === 0) {
      this.p.log.warn('change waits for the schema (run the migration on this node)', { table: ctx.wt.n, reason, waiting: this.waiting.count() });
    }
  }

  private oneChange(ctx: ChangeContext): Buffer {
    return encodeBatch({ v: batchVersion, o: ctx.origin, s: Math.max(0, ctx.shard), tables: [ctx.wt], changes: [{ ...ctx.c, t: 0 }] });
  }

  private reject(m: ApplyMessage, origin: string | null, reason: string): void {
    this.stats.messagesRejected++;
    this.deadLetter({ shard: m.shard, seq: m.seq, origin, table: null, hlc: null, reason: `rejected message: ${reason}`, change: m.data });
  }

  /**
   * How to apply the changes of one table of a batch from `origin`:
   * - its schema (WireTable q/m) is not folded here yet: wait (`local` says why);
   * - else, with schema positions, the table as it is named now (renames since q followed; null:
   *   dropped since), waiting only while this node's own DDL of it is not ordered yet; a table or
   *   columns it lacks then were dropped (`underSchema`: applied without them);
   * - without them (an older origin): the local table, or why it cannot take the change (waits).
   */
  private plan(t: WireTable, origin: string): { wt: WireTable | null; local: CapturedTable | string; underSchema: boolean } {
    const st = this.p.schema?.store;
    if (!st || t.q === undefined || t.m === undefined) return { wt: t, local: this.resolveTable(t), underSchema: false };
    const pos = st.position();
    if (pos < t.q) return { wt: t, local: `waits for the schema: table ${t.n} was defined at schema stream position ${t.q}, this node has folded up to ${pos}`, underSchema: false };
    const folded = st.folded(origin);
    if (folded < t.m) return { wt: t, local: `waits for the schema: needs schema entry ${t.m} of ${origin}, this node has folded up to ${folded}`, underSchema: false };
    const wt = this.translate(t, origin);
    if (wt === null) return { wt: null, local: 'dropped', underSchema: true };
    if (st.ownPendingFor(wt.n) > 0) {
      return { wt, local: `waits for the schema: this node's own change of table ${wt.n} is not ordered by the schema stream yet`, underSchema: false };
    }
    if (!this.p.capture.byName(wt.n)) {
      // Not dropped since the change was made (the history says so), yet not here: its origin has
      // it from a peer's DDL not ordered yet (a snapshot taken while that DDL was unpublished).
      return { wt, local: `waits for the schema: table ${wt.n} is not in this node's schema yet`, underSchema: false };
    }
    return { wt, local: this.resolveTable(wt), underSchema: true };
  }

  /**
   * A table as a change names it, followed through the renames folded since the schema it was made
   * under — R at q plus the origin's own entries up to m (their events are in its view already) —
   * tables and columns; or null when the table was dropped since (a table created again under that
   * name is another table). The origin's own events are undone first (back to R at q), then every
   * event after q is followed in stream order. Events before the origin's own entry that created
   * this table are about another table of that name: skipped.
   */
  private translate(t: WireTable, origin: string): WireTable | null {
    const st = this.p.schema!.store;
    const m = t.m ?? 0;
    const events = st.eventsAfter(t.q ?? 0);
    if (events.length === 0) return t;
    const mine = (ev: SchemaEvent) => ev.origin === origin && ev.n <= m;
    // The change's names in R as of q: the origin's own events undone, newest first (simulation
    // seed 7: another node's column rename was ordered between q and the origin's own table rename;
    // skipping own events instead left the change under the old column name, and it was dropped).
    const at = { name: t.n, cols: t.c, keys: t.k, from: 0 };
    const own = events.filter(mine);
    for (let i = own.length - 1; i >= 0; i--) {
      const ev = own[i]!;
      if ((ev.kind === 'rename-table' || ev.kind === 'lost-rename') && ev.b === at.name) at.name = ev.a!;
      else if (ev.kind === 'rename-column' && ev.tbl === at.name) renameIn(at, ev.b!, ev.a!);
      else if (ev.kind === 'create' && ev.tbl === at.name) {
        // Created by the origin itself: events before are about another table of that name.
        at.from = ev.seq;
        break;
      }
    }
    // Then every event since, in stream order (a rename the stream refused, 'lost-rename', is not one).
    for (const ev of events) {
      if (ev.seq <= at.from) continue;
      if (ev.kind === 'rename-table' && ev.a === at.name) at.name = ev.b!;
      else if (ev.kind === 'drop' && ev.tbl === at.name) return null;
      else if (ev.kind === 'rename-column' && ev.tbl === at.name) renameIn(at, ev.a!, ev.b!);
    }
    return at.name === t.n && at.cols === t.c && at.keys === t.k ? t : { n: at.name, k: at.keys, c: at.cols };
  }

  /**
   * A change whose schema this node has folded, for a table or columns it lacks: the table was
   * dropped since (the change goes with it), or columns were (the rest of the row applies).
   */
  private applyUnderSchema(ctx: ChangeContext): void {
    const local = this.p.capture.byName(ctx.wt.n);
    if (!local) {
      this.stats.changesDroppedWithTable++;
      return;
    }
    const lk = local.schema.keyColumns;
    if (lk.length !== ctx.wt.k.length || lk.some((c, i) => c !== ctx.wt.k[i])) {
      this.deadLetterChange(ctx, `table "${ctx.wt.n}": key columns differ (sender ${ctx.wt.k.join(',')}, here ${lk.join(',')}) under the same schema`);
      return;
    }
    const keep = ctx.wt.c.map((c, i) => (local.schema.columns.includes(c) ? i : -1)).filter((i) => i >= 0);
    const wt = { ...ctx.wt, c: keep.map((i) => ctx.wt.c[i]!) };
    if (ctx.c.d === 1 || !ctx.c.r) {
      this.applyChange({ ...ctx, wt }, local);
      return;
    }
    const row = decodeValues(ctx.c.r);
    this.applyChange({ ...ctx, wt, c: { ...ctx.c, r: encodeValues(keep.map((i) => row[i]!)) } }, local);
  }

  /**
   * Schema entries read from the schema stream, folded in ONE apply transaction (own pending DDL
   * captured first), then capture follows the new schema and the seen schema with it. Changes
   * waiting for these entries are due now.
   */
  applySchema(entries: readonly { seq: number; data: Uint8Array; signer?: string | null; refused?: string }[]): FoldOutcome[] {
    const schema = this.p.schema;
    assert(schema, 'applySchema without schema replication');
    return this.inApplyTx(() => {
      const out = entries.map((e) => (e.refused !== undefined ? schema.applier.refuse(e.seq, e.refused) : schema.applier.fold(e.seq, e.data, e.signer ?? null)));
      this.p.capture.sync();
      for (const name of schema.applier.takeRestamp()) this.p.capture.restampAll(name);
      this.onSchema();
      schema.capture.accept();
      this.waiting.wakeAll();
      return out;
    });
  }

  /** The local table for a wire table, or the reason it cannot take the change. */
  private resolveTable(t: WireTable): CapturedTable | string {
    const local = this.p.capture.byName(t.n);
    if (!local) return `table "${t.n}" does not exist here (or is not captured)`;
    const lk = local.schema.keyColumns;
    if (lk.length !== t.k.length || lk.some((c, i) => c !== t.k[i])) {
      return `table "${t.n}": key columns differ (sender ${t.k.join(',')}, here ${lk.join(',')})`;
    }
    const missing = t.c.filter((c) => !local.schema.columns.includes(c));
    if (missing.length > 0) return `table "${t.n}": column(s) ${missing.join(', ')} do not exist here`;
    return local;
  }

  private deadLetterChange(ctx: ChangeContext, reason: string): void {
    this.deadLetter({ shard: ctx.shard, seq: ctx.seq, origin: ctx.origin, table: ctx.wt.n, hlc: ctx.c.h, reason, change: this.oneChange(ctx) });
  }

  private deadLetter(d: Parameters<Quarantine['deadLetter']>[0]): void {
    this.stats.deadLettered++;
    this.p.quarantine.deadLetter(d);
    this.p.log.warn('change dead-lettered', { shard: d.shard ?? undefined, seq: d.seq ?? undefined, origin: d.origin ?? undefined, table: d.table ?? undefined, reason: d.reason });
  }
}

/**
 * Where the origin's own entries (`own`, oldest first) created the table it now calls `name`
 * (followed back through its own table renames), or 0 when they did not.
 */
/** A column of a change renamed (its column list and key columns). */
function renameIn(at: { cols: readonly string[]; keys: readonly string[] }, from: string, to: string): void {
  if (at.cols.includes(from)) at.cols = at.cols.map((c) => (c === from ? to : c));
  if (at.keys.includes(from)) at.keys = at.keys.map((c) => (c === from ? to : c));
}
