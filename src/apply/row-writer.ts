import type { Database, Statement } from '../sqlite/database.ts';
import { quoteIdent } from '../sqlite/database.ts';
import { bindable, hasTextBytes, placeholder } from '../sqlite/exact.ts';
import type { SqlValue } from '../codec/value-codec.ts';
import type { CapturedTable } from '../capture/capture.ts';
import { keyWhere } from '../capture/capture.ts';

/**
 * Writes remote row versions into user tables (inside the apply transaction, echo suppression on).
 * An upsert writes the full row image: every local column the image lacks (a column added here but
 * not yet on the sender: rolling ADD COLUMN) takes its DEFAULT, so every node holds the same row
 * whatever order migrations and writes happened in. The key columns are written too: the row keeps
 * the key bytes of the winning version ('ALPHA' replacing 'alpha' under NOCASE).
 */
/** Upsert statements kept prepared (one per table and column list): least recently used go first. */
export const upsertCacheMax = 256;

export class RowWriter {
  /** Insertion order is use order (a hit moves to the end): a bounded LRU, whatever column lists arrive. */
  private readonly upserts = new Map<string, Statement>();
  private readonly deletes = new Map<number, Statement>();
  private generation = -1;

  constructor(private readonly db: Database) {}

  /** Forget statements when the schema changed (the caller passes Capture.generation). */
  syncGeneration(generation: number): void {
    if (generation === this.generation) return;
    this.generation = generation;
    this.upserts.clear();
    this.deletes.clear();
  }

  upsert(t: CapturedTable, cols: readonly string[], row: readonly SqlValue[]): void {
    const odd = hasTextBytes(row);
    const id = `${t.tid}|${cols.join('\u0000')}`;
    let stmt = odd ? undefined : this.upserts.get(id);
    if (stmt) {
      this.upserts.delete(id);
      this.upserts.set(id, stmt);
    } else {
      stmt = this.db.prepare(upsertSql(t, cols, odd ? row : null));
      if (!odd) {
        if (this.upserts.size >= upsertCacheMax) this.upserts.delete(this.upserts.keys().next().value!);
        this.upserts.set(id, stmt);
      }
    }
    stmt.run(...bindable(row));
  }

  /** Prepared upsert statements held (bounded by upsertCacheMax). */
  cachedStatements(): number {
    return this.upserts.size;
  }

  /** Restore: fill a table created empty in this transaction with every row of the attached snapshot's copy. */
  copyAll(t: CapturedTable, from: string): number {
    return this.db.prepare(copyRowsSql(t, from)).run().changes;
  }

  /** Delete the rows whose clock entry (table `clockTable`, named in full) matches `where`. */
  deleteWhereClock(t: CapturedTable, clockTable: string, where: string, params: readonly unknown[]): number {
    const table = `main.${quoteIdent(t.schema.name)}`;
    const on = t.schema.keyColumns.map((k, i) => `${clockTable}.k${i} IS ${table}.${k === 'rowid' ? 'rowid' : quoteIdent(k)}`).join(' AND ');
    return this.db.prepare(`DELETE FROM ${table} WHERE EXISTS (SELECT 1 FROM ${clockTable} WHERE ${on} AND ${where})`).run(...params).changes;
  }

  delete(t: CapturedTable, key: readonly SqlValue[]): number {
    if (hasTextBytes(key)) return this.db.prepare(deleteSql(t, key)).run(...bindable(key)).changes;
    let s = this.deletes.get(t.tid);
    if (!s) {
      s = this.db.conn.prepare(deleteSql(t, null));
      this.deletes.set(t.tid, s);
    }
    return s.run(...key).changes;
  }
}

/** Every row of `from`.table (an attached snapshot with the same table definition) into the empty local table, exactly. */
export function copyRowsSql(t: CapturedTable, from: string): string {
  const cols = t.schema.columns.map((c) => (c === 'rowid' ? 'rowid' : quoteIdent(c))).join(', ');
  return `INSERT INTO main.${quoteIdent(t.schema.name)}(${cols}) SELECT ${cols} FROM ${quoteIdent(from)}.${quoteIdent(t.schema.name)}`;
}

function deleteSql(t: CapturedTable, key: readonly SqlValue[] | null): string {
  return `DELETE FROM main.${quoteIdent(t.schema.name)} WHERE ${keyWhere(t.schema, key)}`;
}

function upsertSql(t: CapturedTable, cols: readonly string[], row: readonly SqlValue[] | null): string {
  const name = `main.${quoteIdent(t.schema.name)}`;
  const set = t.schema.columns.filter((c) => c !== 'rowid').map((c) => `${quoteIdent(c)} = excluded.${quoteIdent(c)}`);
  const values = cols.map((_, i) => (row ? placeholder(row[i]!) : '?')).join(', ');
  const target = t.schema.keyColumns.map((k) => (k === 'rowid' ? 'rowid' : quoteIdent(k))).join(', ');
  const colList = cols.map((c) => (c === 'rowid' ? 'rowid' : quoteIdent(c))).join(', ');
  return `INSERT INTO ${name}(${colList}) VALUES (${values}) ON CONFLICT(${target}) DO ${set.length === 0 ? 'NOTHING' : `UPDATE SET ${set.join(', ')}`}`;
}
