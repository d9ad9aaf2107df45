import type { Database } from '../sqlite/database.ts';
import type { Hlc } from '../clock/hlc.ts';
import type { ShardRouter } from '../shard/shard-router.ts';
import { ValueWriter, type SqlValue } from '../codec/value-codec.ts';
import { batchMsgId, batchVersion, encodeBatch, type WireChange, type WireTable } from '../codec/batch-codec.ts';
import { logKeyColumnsMax } from '../sqlite/internal-schema.ts';
import { ExactSelect } from '../sqlite/exact.ts';
import type { ClockStore } from '../store/clock-store.ts';
import type { MetaStore } from '../store/meta-store.ts';
import type { Quarantine } from '../store/quarantine.ts';
import { defaultRowBytesMax } from './capture.ts';
import { assert } from '../util/assert.ts';
import type { Capture, CapturedTable, RefreshResult } from './capture.ts';
import type { SchemaCapture } from './schema-capture.ts';
import type { SchemaStore } from '../store/schema-store.ts';

/** Schema replication's parts the stamper uses (absent: schema changes are not replicated). */
export interface StamperSchema {
  readonly capture: SchemaCapture;
  readonly store: SchemaStore;
}

export interface StamperLimits {
  /** Most log rows read in one pass (one transaction). */
  readonly ingestChangesMax: number;
  /** Most changes in one batch (message). */
  readonly batchChangesMax: number;
  /** Most bytes (approximate, row images + keys) in one batch. */
  readonly batchBytesMax: number;
  /** Largest row image replicated (the capture triggers refuse larger writes; older rows are reported). */
  readonly rowBytesMax?: number;
}

export interface StampResult {
  /** Log rows consumed. */
  readonly logRows: number;
  /** Distinct row changes stamped (several writes to one row between passes coalesce). */
  readonly changes: number;
  /** Outbox batches written. */
  readonly batches: number;
  /** Tables whose rows were stamped (their UNIQUE losers may fit now). */
  readonly tids: ReadonlySet<number>;
}

interface PendingBatch {
  readonly shard: number;
  readonly tables: WireTable[];
  readonly tableIndex: Map<number, number>;
  readonly changes: WireChange[];
  bytes: number;
}

/**
 * Stamp-before-apply: turns captured keys into stamped, encoded, sharded batches in the outbox.
 * For each changed key it reads the row as it is now (absent → delete), assigns a fresh HLC,
 * records it in the per-row clock table and appends the change to its shard's batch. Must run
 * inside the node's write transaction — the apply transaction calls it first, so the row clock
 * always equals the clock of the data in the row.
 */
export class ChangeStamper {
  private readonly keyWriter = new ValueWriter(256);
  private readonly rowWriter = new ValueWriter(4096);
  /** Shards that got outbox batches since the last takeTouchedShards() (the publisher reads only those). */
  private readonly touched = new Set<number>();
  private logSelect: { keyCols: number; select: ExactSelect } | null = null;
  /** Log rows with a NULL key (written before the NULL-key guard): not replicated, counted. */
  nullKeysSkipped = 0;
  /** Rows larger than rowBytesMax: not replicated, dead-lettered here with the reason (status counts them). */
  oversizedRowsSkipped = 0;

  constructor(
    private readonly db: Database,
    private readonly capture: Capture,
    private readonly clocks: ClockStore,
    private readonly meta: MetaStore,
    private readonly quarantine: Quarantine,
    private readonly hlc: Hlc,
    private readonly router: ShardRouter,
    private readonly nodeId: string,
    private readonly clusterName: string,
    private readonly limits: StamperLimits,
    private readonly schema: StamperSchema | null = null,
  ) {}

  /** Shards written since the last call (a rolled-back pass may name a shard with nothing new: harmless). */
  takeTouchedShards(): number[] {
    const out = [...this.touched];
    this.touched.clear();
    return out;
  }

  /**
   * Local DDL becomes a schema entry first — capture then knows a renamed table as the same table
   * (a refresh before would register the new name as a new table: chaos seed 404) — then capture
   * follows the schema. Caller holds the write transaction.
   */
  syncSchema(): RefreshResult | null {
    const ddl = this.schema?.capture.capture();
    for (const op of ddl?.ops ?? []) if (op.renamedFrom !== undefined) this.capture.renameTable(op.renamedFrom, op.name);
    return this.capture.sync();
  }

  /** Stamp up to ingestChangesMax log rows. Caller holds the write transaction. */
  stampPending(): StampResult {
    assert(this.db.conn.inTransaction, 'stampPending outside a write transaction');
    // The schema is read inside this transaction: a migration committed while we waited for the
    // write lock is seen before any row is read with the old column list. Local DDL becomes a
    // schema entry first: the changes stamped next name it, so receivers apply them after it.
    this.syncSchema();
    const rows = this.readLog();
    if (rows.length === 0) return { logRows: 0, changes: 0, batches: 0, tids: new Set() };

    // Coalesce: one change per (table, key), at the position of its last write.
    const latest = new Map<string, { table: CapturedTable; key: SqlValue[] }>();
    let maxSeq = 0n;
    for (const r of rows) {
      maxSeq = r[0] as bigint;
      const tid = Number(r[1] as bigint);
      const table = this.capture.byTid(tid);
      if (!table) continue; // table dropped since the write: nothing left to replicate
      const key = r.slice(2, 2 + table.schema.keyColumns.length);
      if (key.some((v) => v === null)) {
        // Only log rows written before the NULL-key guard existed can hold one: NULL names no row.
        this.nullKeysSkipped++;
        continue;
      }
      const id = `${tid}:${this.keyWriter.reset().writeAll(key).bytes().toString('latin1')}`;
      latest.delete(id);
      latest.set(id, { table, key });
    }
    const batches = new Map<number, PendingBatch>();
    const out: PendingBatch[] = [];
    const tids = new Set<number>();
    for (const { table, key: loggedKey } of latest.values()) {
      const row = table.readRow(loggedKey);
      if (row && this.oversized(table, row)) continue;
      // The change names the row by the key it holds now (equal to the logged key under SQLite's
      // comparison, maybe not in bytes: 'ALPHA' for 'alpha' under NOCASE).
      const key = row ? table.keyIndexes.map((i) => row[i]!) : loggedKey;
      const keyBytes = this.keyWriter.reset().writeAll(key).bytes();
      const hlc = this.stampClock(table.tid, key, !row);
      tids.add(table.tid);
      const shard = this.router.shardOf(table.schema.name, keyBytes);
      let b = batches.get(shard);
      const rowBytes = row ? this.rowWriter.reset().writeAll(row).bytes() : undefined;
      const size = keyBytes.length + (rowBytes?.length ?? 0) + 16;
      if (b && (b.changes.length >= this.limits.batchChangesMax || b.bytes + size > this.limits.batchBytesMax)) {
        out.push(b);
        b = undefined;
      }
      if (!b) {
        b = { shard, tables: [], tableIndex: new Map(), changes: [], bytes: 64 };
        batches.set(shard, b);
      }
      let ti = b.tableIndex.get(table.tid);
      if (ti === undefined) {
        ti = b.tables.length;
        const st = this.schema?.store;
        b.tables.push({ n: table.schema.name, k: table.schema.keyColumns, c: table.schema.columns,
          ...(st ? { q: st.changePosition(table.schema.name), m: st.ownPendingFor(table.schema.name) } : {}) });
        b.tableIndex.set(table.tid, ti);
        b.bytes += table.schema.columns.reduce((a, c) => a + c.length + 2, table.schema.name.length);
      }
      b.changes.push(rowBytes ? { t: ti, h: hlc, d: 0, k: keyBytes, r: rowBytes } : { t: ti, h: hlc, d: 1, k: keyBytes });
      b.bytes += size;
    }
    out.push(...batches.values());

    const insertOutbox = this.db.prepare('INSERT INTO __burrow_outbox(shard, msg_id, changes, payload, bseq) VALUES (?, ?, ?, ?, ?)');
    let bseq = this.meta.lastBatchNumber();
    for (const b of out) {
      const first = b.changes[0];
      assert(first, 'empty batch');
      bseq++;
      const payload = encodeBatch({ v: batchVersion, o: this.nodeId, s: b.shard, n: bseq, tables: b.tables, changes: b.changes });
      insertOutbox.run(b.shard, batchMsgId(this.clusterName, this.nodeId, first.h, payload), b.changes.length, payload, bseq);
      this.touched.add(b.shard);
    }
    if (out.length > 0) this.meta.saveLastBatchNumber(bseq);
    this.db.prepare('DELETE FROM __burrow_log WHERE seq <= ?').run(maxSeq);
    this.meta.saveHlc(this.hlc.peek());
    return { logRows: rows.length, changes: latest.size, batches: out.length, tids };
  }

  /** A row no message could carry: kept here, dead-lettered with the reason, not sent. */
  private oversized(table: CapturedTable, row: readonly SqlValue[]): boolean {
    const bytes = this.rowWriter.reset().writeAll(row).bytes().length;
    if (bytes <= (this.limits.rowBytesMax ?? defaultRowBytesMax)) return false;
    this.oversizedRowsSkipped++;
    this.quarantine.deadLetter({
      shard: null, seq: null, origin: this.nodeId, table: table.schema.name, hlc: null, change: null,
      reason: `local row of ${bytes} bytes is larger than replication.row_bytes_max: not replicated (no message could carry it; make the row smaller and it replicates)`,
    });
    return true;
  }

  /** Log rows, oldest first (exact values: keys may be TEXT that is not UTF-8). */
  private readLog(): SqlValue[][] {
    // Read only as many key columns as the widest captured key (usually 1 of logKeyColumnsMax).
    let keyCols = 1;
    for (const t of this.capture.tables()) keyCols = Math.max(keyCols, t.schema.keyColumns.length);
    keyCols = Math.min(keyCols, logKeyColumnsMax);
    if (this.logSelect?.keyCols !== keyCols) {
      const exprs = ['seq', 'tid', ...Array.from({ length: keyCols }, (_, i) => `k${i}`)];
      this.logSelect = { keyCols, select: new ExactSelect(this.db.conn, exprs, 'FROM __burrow_log ORDER BY seq LIMIT ?') };
    }
    return this.logSelect.select.all(this.limits.ingestChangesMax);
  }

  /**
   * Stamp one row's clock with a fresh HLC, always above the clock the row already carries (a
   * restored or hand-edited replica may hold clocks above the persisted mark).
   */
  private stampClock(tid: number, key: readonly SqlValue[], deleted: boolean): bigint {
    const hlc = this.hlc.now();
    if (this.clocks.setIfNewer(tid, key, hlc, this.nodeId, deleted)) return hlc;
    const cur = this.clocks.get(tid, key);
    assert(cur, 'a clock refused the stamp, so it exists');
    this.hlc.observe(cur.hlc);
    const above = this.hlc.now();
    this.clocks.set(tid, key, above, this.nodeId, deleted);
    return above;
  }
}

