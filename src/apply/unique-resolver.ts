import type { Database } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { bindable, ExactSelect, placeholder } from '../sqlite/exact.ts';
import { decodeValues, encodeValues, TextBytes, type SqlValue } from '../codec/value-codec.ts';
import type { CapturedTable } from '../capture/capture.ts';
import { keyWhere } from '../capture/capture.ts';
import type { UniqueIndex } from '../capture/schema.ts';
import type { ClockStore } from '../store/clock-store.ts';
import type { Quarantine } from '../store/quarantine.ts';
import type { Logger } from '../util/log.ts';
import { lwwWins } from './lww.ts';
import type { RowWriter } from './row-writer.ts';

export type Placement = 'visible' | 'shadowed';

/** One row version to put into its table: the LWW winner of its key. */
export interface RowVersion {
  readonly key: readonly SqlValue[];
  readonly hlc: bigint;
  readonly node: string;
  readonly columns: readonly string[];
  readonly row: readonly SqlValue[];
}

interface Rival {
  readonly index: UniqueIndex;
  readonly key: SqlValue[];
  readonly hlc: bigint;
  readonly node: string;
  readonly row: SqlValue[];
}

const attemptsMax = 8;
/** Shadowed versions tried per reconcile pass, and passes per reconcile (a warning when hit). */
const reconcileRowsMax = 1000;
const reconcilePassesMax = 16;

/** SQLite's error for a secondary UNIQUE index (better-sqlite3 puts the extended code in .code). */
export function isUniqueViolation(err: unknown): boolean {
  return (err as { code?: unknown })?.code === 'SQLITE_CONSTRAINT_UNIQUE';
}

/** A row as readable JSON for the conflicts table (bigints as numbers when exact, BLOBs and odd TEXT as hex). */
export function rowJson(columns: readonly string[], values: readonly SqlValue[]): string {
  const o: Record<string, unknown> = {};
  columns.forEach((c, i) => {
    const v = values[i];
    if (typeof v === 'bigint') o[c] = v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v.toString();
    else if (v instanceof TextBytes) o[c] = { textHex: v.bytes.toString('hex') };
    else if (v instanceof Uint8Array) o[c] = { blob: Buffer.from(v).toString('hex') };
    else o[c] = v ?? null;
  });
  return JSON.stringify(o);
}

/**
 * Secondary UNIQUE indexes under last-writer-wins. Among the live versions that claim one unique
 * value, the strongest (hlc, node) is in the table; the others are *shadowed*: kept, with their
 * image, in their clock entry, out of the table. When the holder moves away or is deleted, the
 * strongest shadowed claimant comes back (reconcile). The outcome is the one stable assignment —
 * strongest first, each version visible unless a stronger visible one clashes — so it depends
 * only on the set of changes, not on the order they arrived in. Every clash is in __burrow_conflicts.
 */
export class UniqueResolver {
  readonly stats = { uniqueConflicts: 0, shadowed: 0, restored: 0, reconcileLimitHits: 0 };

  constructor(
    private readonly db: Database,
    private readonly clocks: ClockStore,
    private readonly rows: RowWriter,
    private readonly quarantine: Quarantine,
    private readonly log: Logger,
  ) {}

  /**
   * Upsert `v` into its table. When a UNIQUE index refuses it: weaker visible rivals are shadowed
   * and the upsert retried; a stronger rival leaves `v` shadowed (the caller stores its image).
   */
  place(t: CapturedTable, v: RowVersion, record = true): Placement {
    try {
      this.rows.upsert(t, v.columns, v.row);
      return 'visible';
    } catch (err) {
      if (!isUniqueViolation(err)) throw err;
    }
    this.db.prepare('SAVEPOINT burrow_unique').run();
    try {
      const r = this.resolve(t, v, record);
      this.db.prepare('RELEASE burrow_unique').run();
      return r;
    } catch (err) {
      if (this.db.conn.inTransaction) {
        this.db.prepare('ROLLBACK TO burrow_unique').run();
        this.db.prepare('RELEASE burrow_unique').run();
      }
      throw err;
    }
  }

  private resolve(t: CapturedTable, v: RowVersion, record: boolean): Placement {
    const incoming = { node: v.node, hlc: v.hlc, row: rowJson(v.columns, v.row) };
    for (let attempt = 1; ; attempt++) {
      const rivals = this.rivals(t, v);
      if (rivals.length === 0) {
        throw new Error('UNIQUE constraint failed and no rival row was found (partial or expression index, or a column the sender lacks)');
      }
      const stronger = rivals.find((r) => lwwWins(r.hlc, r.node, v.hlc, v.node));
      if (stronger) {
        if (record) this.recordConflict(t, stronger.index, { node: stronger.node, hlc: stronger.hlc, row: rowJson(t.schema.columns, stronger.row) }, incoming);
        this.stats.shadowed++;
        return 'shadowed';
      }
      for (const r of rivals) {
        this.recordConflict(t, r.index, incoming, { node: r.node, hlc: r.hlc, row: rowJson(t.schema.columns, r.row) });
        this.rows.delete(t, r.key);
        this.clocks.set(t.tid, r.key, r.hlc, r.node, false, { columns: t.schema.columns, image: encodeValues(r.row) });
        this.stats.shadowed++;
      }
      try {
        this.rows.upsert(t, v.columns, v.row);
        return 'visible';
      } catch (err) {
        if (!isUniqueViolation(err) || attempt >= attemptsMax) throw err;
      }
    }
  }

  /** Visible rows other than `v`'s key holding one of `v`'s values in a secondary UNIQUE index. */
  private rivals(t: CapturedTable, v: RowVersion): Rival[] {
    const out: Rival[] = [];
    const seen = new Set<string>();
    const name = `main.${quoteIdent(t.schema.name)}`;
    const keySel = t.schema.keyColumns.map((k) => (k === 'rowid' ? 'rowid' : quoteIdent(k)));
    for (const ix of t.schema.uniqueIndexes) {
      const idx = ix.columns.map((col) => v.columns.indexOf(col));
      if (idx.some((i) => i < 0)) continue;
      const vals = idx.map((i) => v.row[i]!);
      if (vals.some((x) => x === null)) continue; // NULLs never clash
      const where = ix.columns.map((col, i) => `${quoteIdent(col)} = ${placeholder(vals[i]!)} COLLATE ${quoteIdent(ix.collations[i]!)}`).join(' AND ');
      const keys = new ExactSelect(this.db.conn, keySel, `FROM ${name} WHERE ${where} AND NOT (${keyWhere(t.schema, v.key)})`)
        .all(...bindable(vals), ...bindable(v.key));
      for (const k of keys) {
        const id = encodeValues(k).toString('latin1');
        if (seen.has(id)) continue;
        seen.add(id);
        const clock = this.clocks.get(t.tid, k);
        out.push({ index: ix, key: k, hlc: clock?.hlc ?? 0n, node: clock?.node ?? '', row: t.readRow(k) ?? [] });
      }
    }
    return out;
  }

  /**
   * Try the shadowed versions of `t` again, strongest first, until none moves: a holder that moved
   * away or was deleted lets the strongest claimant back. Inside the apply transaction.
   */
  reconcile(t: CapturedTable): number {
    if (this.clocks.shadowCount(t.tid) === 0) return 0;
    let restored = 0;
    for (let pass = 0; ; pass++) {
      if (pass >= reconcilePassesMax) {
        this.stats.reconcileLimitHits++;
        this.log.warn('UNIQUE reconcile stopped at its pass limit; it resumes at the next change of the table', { table: t.schema.name });
        break;
      }
      let moved = false;
      const shadowed = this.clocks.shadowed(t.tid, reconcileRowsMax);
      for (const s of shadowed) {
        if (s.shadow.columns.some((c) => !t.schema.columns.includes(c))) continue; // a column dropped here since
        const v: RowVersion = { key: s.key, hlc: s.hlc, node: s.node, columns: s.shadow.columns, row: decodeValues(s.shadow.image) };
        if (this.place(t, v, false) === 'shadowed') continue;
        this.clocks.set(t.tid, s.key, s.hlc, s.node, false, null);
        this.stats.restored++;
        restored++;
        moved = true;
      }
      if (!moved) break;
      if (shadowed.length >= reconcileRowsMax) this.stats.reconcileLimitHits++;
    }
    return restored;
  }

  private recordConflict(t: CapturedTable, ix: UniqueIndex, winner: { node: string; hlc: bigint; row: string }, loser: { node: string; hlc: bigint; row: string }): void {
    this.stats.uniqueConflicts++;
    this.quarantine.conflict(t.schema.name, ix.columns, winner, loser);
    this.log.warn('UNIQUE conflict resolved by (hlc, node): the loser is shadowed (kept in its clock entry, back when the value is free) and in __burrow_conflicts', {
      table: t.schema.name, columns: ix.columns.join(','), winner: winner.node, loser: loser.node,
    });
  }
}
