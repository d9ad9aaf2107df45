import type { Database, Statement } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import type { Hlc } from '../clock/hlc.ts';
import { decodeValues, type SqlValue } from '../codec/value-codec.ts';
import { batchVersion, decodeBatch, encodeBatch, MalformedBatchError, type WireBatch, type WireChange, type WireTable } from '../codec/batch-codec.ts';
import type { Capture, CapturedTable } from '../capture/capture.ts';
import { keyWhere } from '../capture/capture.ts';
import type { ChangeStamper } from '../capture/change-stamper.ts';
import { assert } from '../util/assert.ts';
import type { Logger } from '../util/log.ts';
import { lwwWins } from './lww.ts';

/** One message fetched from a shard stream. */
export interface InboundMessage {
  readonly shard: number;
  readonly seq: number;
  readonly data: Uint8Array;
}

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
  held: number;
}

/**
 * The one apply function: used by the shard consumers (and by tests directly). Applies a group of
 * messages in ONE SQLite transaction: first stamps pending local changes (stamp-before-apply), then
 * sets the echo-suppression flag, applies each change by LWW against the per-row clock (deletes
 * leave tombstones), records shard positions, resets the flag, commits. A change that cannot be
 * applied goes to __burrow_dead with the reason; the rest of the batch goes on.
 */
export class Applier {
  readonly stats: ApplyStats = { messages: 0, changesApplied: 0, changesSkipped: 0, ownMessages: 0, deadLettered: 0, held: 0 };
  private readonly upserts = new Map<string, { run(row: SqlValue[], key: SqlValue[]): void }>();
  private readonly deletes = new Map<number, Statement>();
  /** Last hold per origin (status). */
  readonly holds = new Map<string, { aheadMs: number; atMs: number }>();

  constructor(
    private readonly db: Database,
    private readonly capture: Capture,
    private readonly stamper: ChangeStamper,
    private readonly hlc: Hlc,
    private readonly nodeId: string,
    private readonly log: Logger,
  ) {}

  /** Forget prepared statements (after a schema refresh). */
  resetStatements(): void {
    this.upserts.clear();
    this.deletes.clear();
  }

  applyMessages(messages: readonly InboundMessage[]): MessageOutcome[] {
    return this.db.writeTx(() => {
      while (this.stamper.stampPending().logRows > 0) { /* stamp every pending local change first */ }
      const setApplying = this.db.prepare('UPDATE __burrow_state SET applying = ? WHERE id = 1');
      setApplying.run(1n);
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
      setApplying.run(0n);
      return outcomes;
    });
  }

  private applyOne(m: InboundMessage): MessageOutcome {
    this.stats.messages++;
    let batch: WireBatch;
    try {
      batch = decodeBatch(m.data);
    } catch (err) {
      const reason = err instanceof MalformedBatchError ? `malformed message: ${err.message}` : `undecodable message: ${String(err)}`;
      this.deadLetter(m, null, null, null, reason, Buffer.from(m.data));
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
    if (!r.ok) {
      this.stats.held++;
      this.holds.set(batch.o, { aheadMs: r.aheadMs, atMs: Date.now() });
      return { kind: 'held', origin: batch.o, aheadMs: r.aheadMs };
    }
    this.holds.delete(batch.o);
    const getClock = this.db.prepare('SELECT hlc, node FROM __burrow_clock WHERE tid = ? AND pk = ?').raw(true);
    const setClock = this.db.prepare(
      'INSERT INTO __burrow_clock(tid, pk, hlc, node, deleted) VALUES (?, ?, ?, ?, ?) '
      + 'ON CONFLICT(tid, pk) DO UPDATE SET hlc = excluded.hlc, node = excluded.node, deleted = excluded.deleted',
    );
    const resolved = batch.tables.map((t) => this.resolveTable(t));
    for (const c of batch.changes) {
      const wt = batch.tables[c.t];
      const local = resolved[c.t];
      assert(wt && local, 'decodeBatch validated table indexes');
      if (typeof local === 'string') {
        this.deadLetterChange(m, batch, c, wt, local);
        continue;
      }
      const cur = getClock.get(local.tid, c.k) as [bigint, string] | undefined;
      if (cur && !lwwWins(c.h, batch.o, cur[0], cur[1])) {
        this.stats.changesSkipped++;
        continue;
      }
      try {
        const key = decodeValues(c.k);
        if (key.length !== local.schema.keyColumns.length) throw new Error(`key has ${key.length} values, table has ${local.schema.keyColumns.length} key columns`);
        if (c.d === 1) {
          this.deleteStmt(local).run(...key);
        } else {
          assert(c.r, 'decodeBatch validated row images');
          const row = decodeValues(c.r);
          if (row.length !== wt.c.length) throw new Error(`row image has ${row.length} values for ${wt.c.length} columns`);
          this.upsertFor(local, wt.c).run(row, key);
        }
        setClock.run(local.tid, c.k, c.h, batch.o, BigInt(c.d));
        this.stats.changesApplied++;
      } catch (err) {
        this.deadLetterChange(m, batch, c, wt, `apply failed: ${(err as Error).message}`);
      }
    }
    return { kind: 'applied' };
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
