import type { Database, Statement } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import type { Hlc } from '../clock/hlc.ts';
import { decodeValues, encodeValues, type SqlValue } from '../codec/value-codec.ts';
import { batchVersion, decodeBatch, encodeBatch, MalformedBatchError, type WireBatch, type WireChange, type WireTable } from '../codec/batch-codec.ts';
import type { Capture, CapturedTable } from '../capture/capture.ts';
import { keyWhere } from '../capture/capture.ts';
import type { ChangeStamper } from '../capture/change-stamper.ts';
import { assert } from '../util/assert.ts';
import type { Logger } from '../util/log.ts';
import { lwwWins } from './lww.ts';
import type { GapTracker, NoteResult } from '../replication/gaps.ts';
import type { InboundMessage } from '../replication/inbound.ts';

export type MessageOutcome =
  | { readonly kind: 'applied' }
  /** Held: its clock is too far ahead; redeliver later. */
  | { readonly kind: 'held'; readonly origin: string; readonly aheadMs: number };

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
  /** Secondary UNIQUE conflicts resolved by (hlc, node). */
  uniqueConflicts: number;
}

/** Most changes kept waiting for a schema; beyond it messages are held in JetStream (redelivered later). */
export const waitingChangesMax = 1_000_000;
const waitingRetryMsMin = 1_000;
const waitingRetryMsMax = 60_000;
const uniqueResolveAttemptsMax = 8;

interface UniqueIndex {
  readonly name: string;
  readonly columns: readonly string[];
  readonly collations: readonly string[];
}

/** SQLite's error for a secondary UNIQUE index (better-sqlite3 puts the extended code in .code). */
function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/** A row as readable JSON for the conflicts table (bigints as numbers when exact, BLOBs as hex). */
export function rowJson(columns: readonly string[], values: readonly SqlValue[]): string {
  const o: Record<string, unknown> = {};
  columns.forEach((c, i) => {
    const v = values[i];
    if (typeof v === 'bigint') o[c] = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    else if (v instanceof Uint8Array) o[c] = { blob: Buffer.from(v).toString('hex') };
    else o[c] = v ?? null;
  });
  return JSON.stringify(o);
}

/**
 * The one apply function: used by the shard consumers (and by tests directly). Applies a group of
 * messages in ONE SQLite transaction: first stamps pending local changes (stamp-before-apply), then
 * sets the echo-suppression flag, applies each change by LWW against the per-row clock (deletes
 * leave tombstones), records shard positions, resets the flag, commits. A change that cannot be
 * applied goes to __burrow_dead with the reason; the rest of the batch goes on.
 */
export class Applier {
  readonly stats: ApplyStats = {
    messages: 0, changesApplied: 0, changesSkipped: 0, ownMessages: 0, deadLettered: 0, messagesRejected: 0, held: 0,
    changesParked: 0, changesUnparked: 0, uniqueConflicts: 0,
  };
  private readonly upserts = new Map<string, { run(row: SqlValue[], key: SqlValue[]): void }>();
  private readonly deletes = new Map<number, Statement>();
  private readonly uniques = new Map<number, readonly UniqueIndex[]>();
  private waiting: number;
  /** Last hold per origin (status). */
  readonly holds = new Map<string, { aheadMs: number; atMs: number }>();

  constructor(
    private readonly db: Database,
    private readonly capture: Capture,
    private readonly stamper: ChangeStamper,
    private readonly hlc: Hlc,
    private readonly nodeId: string,
    private readonly log: Logger,
    /** Node ids of the cluster: messages from any other origin are rejected. */
    private readonly members: ReadonlySet<string>,
    /** Batch-number tracking per origin (gaps.ts); contiguous values are saved in the apply transaction. */
    private readonly gaps: GapTracker | null = null,
  ) {
    this.waiting = Number(this.db.prepare('SELECT count(*) FROM __burrow_waiting').pluck().get() as bigint);
  }

  /** Forget prepared statements (after a schema refresh). */
  resetStatements(): void {
    this.upserts.clear();
    this.deletes.clear();
    this.uniques.clear();
  }

  /** Changes parked until their table or columns exist here. */
  waitingCount(): number {
    return this.waiting;
  }

  /** One apply transaction: stamp pending local changes first (stamp-before-apply), echo suppression on. */
  private inApplyTx<T>(fn: () => T): T {
    return this.db.writeTx(() => {
      while (this.stamper.stampPending().logRows > 0) { /* stamp every pending local change first */ }
      const setApplying = this.db.prepare('UPDATE __burrow_state SET applying = ? WHERE id = 1');
      setApplying.run(1n);
      const r = fn();
      setApplying.run(0n);
      return r;
    });
  }

  applyMessages(messages: readonly InboundMessage[]): MessageOutcome[] {
    // Only our own batches coming back (their changes are in the clock table since capture): no
    // transaction at all. The consumer's ack floor records the position.
    if (messages.length > 0 && messages.every((m) => m.origin === this.nodeId)) {
      this.stats.messages += messages.length;
      this.stats.ownMessages += messages.length;
      return messages.map(() => ({ kind: 'applied' }));
    }
    return this.inApplyTx(() => {
      const outcomes: MessageOutcome[] = [];
      const positions = new Map<number, number>();
      for (const m of messages) {
        outcomes.push(this.applyOne(m));
        positions.set(m.shard, Math.max(positions.get(m.shard) ?? 0, m.seq));
      }
      const pos = this.db.prepare(
        'INSERT INTO __burrow_applied(shard, stream_seq, at_ms) VALUES (?, ?, ?) '
        + 'ON CONFLICT(shard) DO UPDATE SET stream_seq = max(stream_seq, excluded.stream_seq), at_ms = excluded.at_ms',
      );
      const now = BigInt(Date.now());
      for (const [shard, seq] of positions) pos.run(BigInt(shard), BigInt(seq), now);
      return outcomes;
    });
  }

  /**
   * Retry parked changes that are due (all of them when `all`): applied when their table and
   * columns exist now, else rescheduled with backoff. Returns how many were applied.
   */
  retryWaiting(all: boolean, limit = 500): { applied: number; stillWaiting: number } {
    if (this.waiting === 0) return { applied: 0, stillWaiting: 0 };
    const now = Date.now();
    const rows = this.db.prepare(
      'SELECT id, attempts, shard, stream_seq, change FROM __burrow_waiting WHERE next_ms <= ? ORDER BY next_ms, id LIMIT ?',
    ).raw(true).all(all ? BigInt(Number.MAX_SAFE_INTEGER) : BigInt(now), limit) as [bigint, bigint, bigint | null, bigint | null, Buffer][];
    if (rows.length === 0) return { applied: 0, stillWaiting: this.waiting };
    let applied = 0;
    this.inApplyTx(() => {
      const del = this.db.prepare('DELETE FROM __burrow_waiting WHERE id = ?');
      const again = this.db.prepare('UPDATE __burrow_waiting SET attempts = ?, next_ms = ?, reason = ? WHERE id = ?');
      for (const [id, attempts, shard, seq, change] of rows) {
        const m: InboundMessage = { shard: Number(shard ?? -1), seq: Number(seq ?? 0), data: change };
        const batch = decodeBatch(change); // written by us: valid
        const wt = batch.tables[0]!;
        const c = batch.changes[0]!;
        const local = this.resolveTable(wt);
        if (typeof local === 'string') {
          const n = Number(attempts) + 1;
          const delay = Math.min(waitingRetryMsMax, waitingRetryMsMin * 2 ** Math.min(n, 10));
          again.run(BigInt(n), BigInt(now + delay), local, id);
          continue;
        }
        del.run(id);
        this.waiting--;
        this.stats.changesUnparked++;
        applied++;
        this.applyChange(m, batch, c, wt, local);
      }
    });
    if (applied > 0) this.log.info('applied changes that were waiting for the schema', { applied, stillWaiting: this.waiting });
    return { applied, stillWaiting: this.waiting };
  }

  /** Make every parked change due now (the schema changed). */
  wakeWaiting(): void {
    if (this.waiting > 0) this.db.prepare('UPDATE __burrow_waiting SET next_ms = 0').run();
  }

  private applyOne(m: InboundMessage): MessageOutcome {
    this.stats.messages++;
    let batch: WireBatch;
    try {
      batch = decodeBatch(m.data);
    } catch (err) {
      this.reject(m, null, err instanceof MalformedBatchError ? `malformed: ${err.message}` : `undecodable: ${String(err)}`);
      return { kind: 'applied' };
    }
    if (!this.members.has(batch.o)) {
      this.reject(m, batch.o, `origin node "${batch.o}" is not a member of this cluster (members: ${[...this.members].join(', ')})`);
      return { kind: 'applied' };
    }
    if (batch.s !== m.shard) {
      this.reject(m, batch.o, `batch says shard ${batch.s} but arrived on shard ${m.shard}`);
      return { kind: 'applied' };
    }
    if (batch.o === this.nodeId) {
      // Our own batch: its changes were stamped into the clock table when captured (equal clock: no-op).
      this.stats.ownMessages++;
      return { kind: 'applied' };
    }
    let maxHlc = 0n;
    for (const c of batch.changes) if (c.h > maxHlc) maxHlc = c.h;
    const r = this.hlc.receive(maxHlc);
    const resolved = batch.tables.map((t) => this.resolveTable(t));
    if (this.waiting >= waitingChangesMax && resolved.some((t) => typeof t === 'string')) {
      // The waiting room is full: leave the message in JetStream for now (never drop it).
      this.stats.held++;
      return { kind: 'held', origin: batch.o, aheadMs: 0 };
    }
    if (!r.ok) {
      this.stats.held++;
      this.holds.set(batch.o, { aheadMs: r.aheadMs, atMs: Date.now() });
      return { kind: 'held', origin: batch.o, aheadMs: r.aheadMs };
    }
    this.holds.delete(batch.o);
    for (const c of batch.changes) {
      const wt = batch.tables[c.t];
      const local = resolved[c.t];
      assert(wt && local, 'decodeBatch validated table indexes');
      if (typeof local === 'string') this.park(m, batch, c, wt, local);
      else this.applyChange(m, batch, c, wt, local);
    }
    if (batch.n !== undefined && this.gaps) this.saveReceived(batch.o, batch.n, this.gaps.noteApplied(batch.o, batch.n));
    return { kind: 'applied' };
  }

  /** Persist batch-number tracking (in the caller's transaction). */
  saveReceived(origin: string, n: number, r: NoteResult): void {
    if (r.above) this.db.prepare('INSERT OR IGNORE INTO __burrow_received_above(origin, n) VALUES (?, ?)').run(origin, BigInt(n));
    if (r.contiguous !== null) {
      this.db.prepare('INSERT INTO __burrow_received(origin, contiguous) VALUES (?, ?) ON CONFLICT(origin) DO UPDATE SET contiguous = excluded.contiguous')
        .run(origin, BigInt(r.contiguous));
      this.db.prepare('DELETE FROM __burrow_received_above WHERE origin = ? AND n <= ?').run(origin, BigInt(r.contiguous));
    }
  }

  /** LWW-apply one change to an existing local table; a change that cannot apply is dead-lettered. */
  private applyChange(m: InboundMessage, batch: WireBatch, c: WireChange, wt: WireTable, local: CapturedTable): void {
    const cur = this.getClock(local.tid, c.k);
    if (cur && !lwwWins(c.h, batch.o, cur[0], cur[1])) {
      this.stats.changesSkipped++;
      return;
    }
    try {
      const key = decodeValues(c.k);
      if (key.length !== local.schema.keyColumns.length) throw new Error(`key has ${key.length} values, table has ${local.schema.keyColumns.length} key columns`);
      let deleted = c.d;
      if (c.d === 1) {
        this.deleteStmt(local).run(...key);
      } else {
        assert(c.r, 'decodeBatch validated row images');
        const row = decodeValues(c.r);
        if (row.length !== wt.c.length) throw new Error(`row image has ${row.length} values for ${wt.c.length} columns`);
        if (this.upsertResolvingUnique(batch, c, wt, local, key, row) === 'lost') deleted = 1;
      }
      this.setClock(local.tid, c.k, c.h, batch.o, deleted);
      this.stats.changesApplied++;
    } catch (err) {
      // A failed statement undoes itself (its triggers included); the rest of the batch goes on.
      this.deadLetterChange(m, batch, c, wt, `apply failed: ${(err as Error).message}`);
    }
  }

  private getClock(tid: number, pk: Uint8Array): [bigint, string] | undefined {
    return this.db.prepare('SELECT hlc, node FROM __burrow_clock WHERE tid = ? AND pk = ?').raw(true).get(tid, pk) as [bigint, string] | undefined;
  }

  private setClock(tid: number, pk: Uint8Array, hlc: bigint, node: string, deleted: number): void {
    this.db.prepare(
      'INSERT INTO __burrow_clock(tid, pk, hlc, node, deleted) VALUES (?, ?, ?, ?, ?) '
      + 'ON CONFLICT(tid, pk) DO UPDATE SET hlc = excluded.hlc, node = excluded.node, deleted = excluded.deleted',
    ).run(tid, pk, hlc, node, BigInt(deleted));
  }

  /**
   * Upsert; when a secondary UNIQUE index refuses it, the (hlc, node) winner keeps the unique
   * value: if the incoming change beats every local row holding the value, those rows are deleted
   * (tombstoned at their own clock) and the upsert retried; otherwise the incoming row loses — its
   * key ends deleted, tombstoned at its clock. Every node decides the same way in any arrival
   * order, so all end identical. Both rows go to __burrow_conflicts.
   */
  private upsertResolvingUnique(batch: WireBatch, c: WireChange, wt: WireTable, local: CapturedTable, key: SqlValue[], row: SqlValue[]): 'applied' | 'lost' {
    try {
      this.upsertFor(local, wt.c).run(row, key);
      return 'applied';
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
    // Resolution deletes rows before retrying: a savepoint undoes all of it if the change still fails.
    this.db.prepare('SAVEPOINT burrow_unique').run();
    try {
      for (let attempt = 1; ; attempt++) {
        const rivals = this.uniqueRivals(local, wt.c, row, c.k);
        if (rivals.length === 0) {
          throw new Error('UNIQUE constraint failed and no rival row was found (partial or expression index, or a column the sender lacks)');
        }
        const incoming = rowJson(wt.c, row);
        const winner = rivals.find((r) => lwwWins(r.hlc, r.node, c.h, batch.o));
        if (winner) {
          this.recordConflict(local, winner.index, { node: winner.node, hlc: winner.hlc, row: winner.row }, { node: batch.o, hlc: c.h, row: incoming });
          this.deleteStmt(local).run(...key);
          this.db.prepare('RELEASE burrow_unique').run();
          return 'lost';
        }
        for (const r of rivals) {
          this.recordConflict(local, r.index, { node: batch.o, hlc: c.h, row: incoming }, { node: r.node, hlc: r.hlc, row: r.row });
          this.deleteStmt(local).run(...r.key);
          this.setClock(local.tid, r.keyBytes, r.hlc, r.node, 1);
        }
        try {
          this.upsertFor(local, wt.c).run(row, key);
          this.db.prepare('RELEASE burrow_unique').run();
          return 'applied';
        } catch (err) {
          if (!isUniqueViolation(err) || attempt >= uniqueResolveAttemptsMax) throw err;
        }
      }
    } catch (err) {
      this.db.prepare('ROLLBACK TO burrow_unique').run();
      this.db.prepare('RELEASE burrow_unique').run();
      throw err;
    }
  }

  /** Local rows (other than the incoming key) holding the incoming row's value in some secondary UNIQUE index. */
  private uniqueRivals(local: CapturedTable, cols: readonly string[], row: readonly SqlValue[], keyBytes: Uint8Array) {
    const out: { index: UniqueIndex; key: SqlValue[]; keyBytes: Buffer; hlc: bigint; node: string; row: string }[] = [];
    const seen = new Set<string>();
    const name = `main.${quoteIdent(local.schema.name)}`;
    const keySel = local.schema.keyColumns.map((k) => (k === 'rowid' ? 'rowid' : quoteIdent(k))).join(', ');
    const own = Buffer.from(keyBytes).toString('latin1');
    for (const ix of this.uniqueIndexes(local)) {
      const idx = ix.columns.map((col) => cols.indexOf(col));
      if (idx.some((i) => i < 0)) continue;
      const vals = idx.map((i) => row[i]!);
      if (vals.some((v) => v === null)) continue; // NULLs never clash
      const where = ix.columns.map((col, i) => `${quoteIdent(col)} = ? COLLATE ${ix.collations[i]}`).join(' AND ');
      const keys = this.db.prepare(`SELECT ${keySel} FROM ${name} WHERE ${where}`).raw(true).all(...vals) as SqlValue[][];
      for (const k of keys) {
        const kb = encodeValues(k);
        const id = kb.toString('latin1');
        if (id === own || seen.has(id)) continue;
        seen.add(id);
        const clock = this.getClock(local.tid, kb);
        const full = local.selectRow.raw(true).get(...k) as SqlValue[] | undefined;
        out.push({ index: ix, key: k, keyBytes: kb, hlc: clock?.[0] ?? 0n, node: clock?.[1] ?? '', row: full ? rowJson(local.schema.columns, full) : '{}' });
      }
    }
    return out;
  }

  /** Secondary UNIQUE indexes whose rivals can be found by plain column lookups (not partial, no expressions). */
  private uniqueIndexes(local: CapturedTable): readonly UniqueIndex[] {
    let u = this.uniques.get(local.tid);
    if (u) return u;
    const list = this.db.conn.prepare(`PRAGMA main.index_list(${quoteIdent(local.schema.name)})`).all() as { name: string; unique: bigint; origin: string; partial: bigint }[];
    const found: UniqueIndex[] = [];
    for (const ix of list) {
      if (ix.unique !== 1n || ix.origin === 'pk' || ix.partial === 1n) continue;
      const cols = (this.db.conn.prepare(`PRAGMA main.index_xinfo(${quoteIdent(ix.name)})`).all() as { cid: bigint; name: string | null; key: bigint; coll: string }[])
        .filter((c) => c.key === 1n);
      if (cols.some((c) => c.cid < 0n || c.name === null)) continue; // expression or rowid column
      found.push({ name: ix.name, columns: cols.map((c) => c.name!), collations: cols.map((c) => c.coll) });
    }
    u = found;
    this.uniques.set(local.tid, u);
    return u;
  }

  private recordConflict(local: CapturedTable, ix: UniqueIndex, winner: { node: string; hlc: bigint; row: string }, loser: { node: string; hlc: bigint; row: string }): void {
    this.stats.uniqueConflicts++;
    this.db.prepare('INSERT INTO __burrow_conflicts(at_ms, tbl, unique_columns, winner_node, winner_hlc, winner_row, loser_node, loser_hlc, loser_row) '
      + 'VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), local.schema.name, ix.columns.join(','), winner.node, winner.hlc, winner.row, loser.node, loser.hlc, loser.row);
    this.log.warn('UNIQUE conflict resolved by (hlc, node): the loser is in __burrow_conflicts', {
      table: local.schema.name, columns: ix.columns.join(','), winner: winner.node, loser: loser.node,
    });
  }

  /** A change for a table or column that does not exist here yet: kept in __burrow_waiting, retried. */
  private park(m: InboundMessage, b: WireBatch, c: WireChange, t: WireTable, reason: string): void {
    const one = encodeBatch({ v: batchVersion, o: b.o, s: b.s, tables: [t], changes: [{ ...c, t: 0 }] });
    const now = Date.now();
    this.db.prepare('INSERT INTO __burrow_waiting(at_ms, next_ms, attempts, shard, stream_seq, origin, tbl, hlc, reason, change) VALUES (?, ?, 0, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(now), BigInt(now + waitingRetryMsMin), BigInt(m.shard), BigInt(m.seq), b.o, t.n, c.h, reason, one);
    this.waiting++;
    this.stats.changesParked++;
    if (this.stats.changesParked === 1 || this.stats.changesParked % 1000 === 0) {
      this.log.warn('change waits for the schema (run the migration on this node)', { table: t.n, reason, waiting: this.waiting });
    }
  }

  private reject(m: InboundMessage, origin: string | null, reason: string): void {
    this.stats.messagesRejected++;
    this.deadLetter(m, origin, null, null, `rejected message: ${reason}`, Buffer.from(m.data));
  }

  /** The local table for a wire table, or the reason it cannot take the change. */
  private resolveTable(t: WireTable): CapturedTable | string {
    const local = this.capture.byName(t.n);
    if (!local) return `table "${t.n}" does not exist here (or is not captured)`;
    const lk = local.schema.keyColumns;
    if (lk.length !== t.k.length || lk.some((c, i) => c !== t.k[i])) {
      return `table "${t.n}": key columns differ (sender ${t.k.join(',')}, here ${lk.join(',')})`;
    }
    const missing = t.c.filter((c) => !local.schema.columns.includes(c));
    if (missing.length > 0) return `table "${t.n}": column(s) ${missing.join(', ')} do not exist here`;
    return local;
  }

  private deleteStmt(t: CapturedTable): Statement {
    let s = this.deletes.get(t.tid);
    if (!s) {
      s = this.db.conn.prepare(`DELETE FROM main.${quoteIdent(t.schema.name)} WHERE ${keyWhere(t.schema)}`);
      this.deletes.set(t.tid, s);
    }
    return s;
  }

  private upsertFor(t: CapturedTable, cols: readonly string[]): { run(row: SqlValue[], key: SqlValue[]): void } {
    const id = `${t.tid}|${cols.join('\u0000')}`;
    let u = this.upserts.get(id);
    if (u) return u;
    const name = `main.${quoteIdent(t.schema.name)}`;
    const keySet = new Set(t.schema.keyColumns);
    const nonKey = cols.filter((c) => !keySet.has(c));
    if (!t.schema.rowidKeyed) {
      const set = nonKey.length === 0 ? 'NOTHING' : `UPDATE SET ${nonKey.map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`).join(', ')}`;
      const stmt = this.db.conn.prepare(
        `INSERT INTO ${name}(${cols.map(quoteIdent).join(', ')}) VALUES (${cols.map(() => '?').join(', ')}) `
        + `ON CONFLICT(${t.schema.keyColumns.map(quoteIdent).join(', ')}) DO ${set}`,
      );
      u = { run: (row) => void stmt.run(...row) };
    } else {
      // No declared key: UPDATE by rowid, INSERT when absent (never INSERT OR REPLACE: it would
      // silently delete rows that clash on other UNIQUE indexes).
      const idx = nonKey.map((c) => cols.indexOf(c));
      const update = nonKey.length === 0 ? null : this.db.conn.prepare(
        `UPDATE ${name} SET ${nonKey.map((c) => `${quoteIdent(c)} = ?`).join(', ')} WHERE rowid = ?`,
      );
      const insert = this.db.conn.prepare(`INSERT INTO ${name}(${cols.map(quoteIdent).join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`);
      const exists = this.db.conn.prepare(`SELECT 1 FROM ${name} WHERE rowid = ?`).pluck();
      u = {
        run: (row, key) => {
          if (update) {
            if (update.run(...idx.map((i) => row[i]), key[0]).changes > 0) return;
          } else if (exists.get(key[0]) !== undefined) return;
          insert.run(...row);
        },
      };
    }
    this.upserts.set(id, u);
    return u;
  }

  private deadLetterChange(m: InboundMessage, b: WireBatch, c: WireChange, t: WireTable, reason: string): void {
    const one = encodeBatch({ v: batchVersion, o: b.o, s: b.s, tables: [t], changes: [{ ...c, t: 0 }] });
    this.deadLetter(m, b.o, t.n, c.h, reason, one);
  }

  private deadLetter(m: InboundMessage, origin: string | null, table: string | null, hlc: bigint | null, reason: string, change: Buffer): void {
    this.stats.deadLettered++;
    this.db.prepare('INSERT INTO __burrow_dead(at_ms, shard, stream_seq, origin, tbl, hlc, reason, change) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(BigInt(Date.now()), BigInt(m.shard), BigInt(m.seq), origin, table, hlc, reason, change);
    this.log.warn('change dead-lettered', { shard: m.shard, seq: m.seq, origin: origin ?? undefined, table: table ?? undefined, reason });
  }
}
